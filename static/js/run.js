// A workflow run as it happens: node states and the LLM's tokens, pushed over one WebSocket.
const root = document.getElementById("run");
const statusEl = document.getElementById("run-status");
const stream = document.getElementById("stream");
const FINISHED = new Set(["done", "failed"]);
const streams = new Map();  // node id -> its element in #stream

function nodeStream(node) {
  if (!streams.has(node)) {
    const box = document.createElement("p");
    box.dataset.node = node;
    box.innerHTML = `<span class="meta"></span> <span class="text"></span>`;
    box.querySelector(".meta").textContent = `${node}:`;
    stream.append(box);
    streams.set(node, box.querySelector(".text"));
  }
  return streams.get(node);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${root.dataset.socketPath}`);
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "token") nodeStream(message.node).textContent += message.text;
    if (message.type === "retry") nodeStream(message.node).textContent = "";  // the retry starts over
    if (message.type === "node") statusEl.textContent = `Running (${message.node}: ${message.status})`;
    const finished = message.type === "finished" || (message.type === "snapshot" && FINISHED.has(message.status));
    // Finished: the server renders the results, the node table and any error.
    if (finished && !FINISHED.has(root.dataset.status)) location.reload();
  };
  socket.onclose = (event) => {
    if (!FINISHED.has(root.dataset.status) && event.code !== 4401 && event.code !== 4404) setTimeout(connect, 1000);
  };
}

if (!FINISHED.has(root.dataset.status)) connect();
