// Refuse an oversized file before sending it: the server would refuse it anyway, after the wait.
const form = document.getElementById("upload-form");
const input = form.querySelector("input[type=file]");
const errorEl = document.getElementById("upload-error");
const maxBytes = Number(form.dataset.maxMb) * 1024 * 1024;

form.addEventListener("submit", (event) => {
  const file = input.files[0];
  if (file && file.size > maxBytes) {
    event.preventDefault();
    errorEl.textContent = `The file is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${form.dataset.maxMb} MB.`;
    errorEl.hidden = false;
  }
});
