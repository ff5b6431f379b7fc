// Live job progress for a recording page: one WebSocket, pushed updates, no polling.
const root = document.getElementById("recording");
const statusEl = document.getElementById("status");
const progressEl = document.getElementById("progress");
const errorEl = document.getElementById("error");
const durationEl = document.getElementById("duration");
const transcriptEl = document.getElementById("transcript");

const FINISHED = new Set(["done", "failed"]);
let status = root.dataset.status;
let retryDelay = 500;

async function showTranscript() {
  const response = await fetch(root.dataset.transcriptUrl, { credentials: "same-origin" });
  if (response.ok) transcriptEl.innerHTML = await response.text();
}

function render(message) {
  const wasFinished = FINISHED.has(status);
  status = message.status;
  root.dataset.status = status;
  statusEl.textContent = message.status_label;
  statusEl.className = `status status-${status}`;
  progressEl.value = message.progress;
  progressEl.hidden = FINISHED.has(status);
  if (message.duration) durationEl.textContent = `· ${message.duration.toFixed(1)} s of audio`;
  errorEl.textContent = message.error || "";
  errorEl.hidden = !message.error;
  if (status === "done" && !wasFinished) showTranscript();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${root.dataset.socketPath}`);
  socket.onopen = () => { retryDelay = 500; };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "progress") render(message);
    if (FINISHED.has(status)) socket.close(1000);
  };
  socket.onclose = (event) => {
    // 4401/4404: not logged in or not ours; retrying cannot help.
    if (FINISHED.has(status) || event.code === 4401 || event.code === 4404) return;
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  };
}

if (!FINISHED.has(status)) connect();
