// Forms marked data-confirm ask before they are sent (instead of inline onsubmit handlers, which the
// Content-Security-Policy refuses).
document.addEventListener("submit", (event) => {
  const message = event.target.dataset?.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
