// Live job progress for a recording page: one WebSocket, pushed updates, no polling.
const root = document.getElementById("recording");
const statusEl = document.getElementById("status");
const progressEl = document.getElementById("progress");
const errorEl = document.getElementById("error");
const durationEl = document.getElementById("duration");
const transcriptEl = document.getElementById("transcript");
const knowledgeEl = document.getElementById("knowledge");
const player = document.getElementById("player");

const FINISHED = new Set(["done", "failed"]);
let status = root.dataset.status;
let retryDelay = 500;

async function showTranscript() {
  const response = await fetch(root.dataset.transcriptUrl, { credentials: "same-origin" });
  if (response.ok) transcriptEl.innerHTML = await response.text();
  showKnowledge();
}

// Entities, topics and related recordings from the graph: fetched, so the page never waits on Neo4j.
async function showKnowledge(attempt = 0) {
  const response = await fetch(root.dataset.graphUrl, { credentials: "same-origin" });
  if (!response.ok) return;
  knowledgeEl.innerHTML = await response.text();
  // Just transcribed: the graph write follows within a second or two.
  if (knowledgeEl.querySelector(".meta") && !knowledgeEl.querySelector("ul") && attempt < 5) {
    setTimeout(() => showKnowledge(attempt + 1), 1000 * (attempt + 1));
  }
}

// "#t=12.5" (from search results and the transcript's times) plays from that moment.
function playFrom(seconds) {
  if (!player || Number.isNaN(seconds)) return;
  player.currentTime = seconds;
  player.play().catch(() => {});  // autoplay may be refused; the position is still set
  let current = null;
  for (const li of transcriptEl.querySelectorAll("li[data-start]")) {
    li.classList.remove("current");
    if (Number(li.dataset.start) <= seconds + 0.01) current = li;
  }
  if (current) { current.classList.add("current"); current.scrollIntoView({ block: "center" }); }
}

function playFromHash() {
  const match = location.hash.match(/^#t=([\d.]+)$/);
  if (match) playFrom(Number(match[1]));
}
window.addEventListener("hashchange", playFromHash);

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
if (status === "done") { showKnowledge(); playFromHash(); }
