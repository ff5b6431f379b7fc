// The Live page: microphone -> AudioWorklet (16 kHz PCM16) -> one WebSocket; partial text shown
// apart from committed text, which is only ever appended to. Reconnects with backoff and resumes
// the server's session, re-sending the audio it had not received.
const page = document.getElementById("live");
const startButton = document.getElementById("live-start");
const stopButton = document.getElementById("live-stop");
const statusEl = document.getElementById("live-status");
const committedEl = document.getElementById("live-committed");
const partialEl = document.getElementById("live-partial");
const noticeEl = document.getElementById("live-notice");

const FRAME_SECONDS = 0.16;
const KEEP_SECONDS = 30; // audio kept to re-send after a reconnect
const FATAL = new Set([4400, 4401, 4402, 4408, 4409, 4413, 4420, 4421, 4429, 1009]); // the stream cannot go on
let socket = null;
let session = null;
let stopping = false;
let retries = 0;
let totalSamples = 0;
let backlog = []; // [{offset, buffer}]
let audio = null; // {context, stream, node}

function setStatus(text) { statusEl.textContent = text; }
function notice(text) { noticeEl.textContent = text; noticeEl.hidden = !text; }

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${page.dataset.socketPath}`;
}

function sendFrame(frame) {
  if (socket && socket.readyState === WebSocket.OPEN && session) socket.send(frame.buffer);
}

function onFrame(buffer) {
  const frame = { offset: totalSamples, buffer };
  totalSamples += buffer.byteLength / 2;
  page.dataset.samples = totalSamples; // for tests and curious people
  backlog.push(frame);
  while (backlog.length && backlog[0].offset < totalSamples - KEEP_SECONDS * 16000) backlog.shift();
  sendFrame(frame);
}

function handle(message) {
  switch (message.type) {
    case "ready":
      if (message.resumed) {
        backlog.filter((f) => f.offset >= message.received).forEach(sendFrame);
      }
      session = message.session;
      retries = 0;
      setStatus(stopping ? "Finishing…" : "Listening");
      notice("");
      break;
    case "partial":
      partialEl.textContent = message.text;
      break;
    case "final": {
      const span = document.createElement("span");
      span.className = "final";
      span.dataset.start = message.start;
      span.textContent = message.text + " ";
      committedEl.append(span);
      break;
    }
    case "lagging":
      notice(`The server is busy: ${message.skipped} s of audio were skipped to catch up.`);
      break;
    case "error":
      notice(message.message);
      break;
    case "saved":
      partialEl.textContent = "";
      setStatus("Saved");
      if (message.url) {
        const link = document.createElement("a");
        link.href = message.url;
        link.id = "live-saved";
        link.textContent = "Open the saved recording";
        noticeEl.replaceChildren(link);
        noticeEl.hidden = false;
      }
      break;
  }
}

function connect() {
  socket = new WebSocket(socketUrl());
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    const language = document.getElementById("live-language").value.trim();
    socket.send(JSON.stringify(session ? { type: "start", resume: session } : { type: "start", language }));
  };
  socket.onmessage = (event) => handle(JSON.parse(event.data));
  socket.onclose = (event) => {
    if (stopping || FATAL.has(event.code)) {
      if (FATAL.has(event.code)) setStatus("Stopped");
      startButton.disabled = false;
      stopButton.disabled = true;
      return;
    }
    // Exponential backoff with jitter, up to 10 s; the session waits on the server meanwhile.
    const delay = Math.min(10000, 500 * 2 ** retries) * (0.5 + Math.random() / 2);
    retries += 1;
    setStatus(`Reconnecting in ${(delay / 1000).toFixed(1)} s…`);
    setTimeout(connect, delay);
  };
}

async function start() {
  startButton.disabled = true;
  committedEl.replaceChildren();
  partialEl.textContent = "";
  notice("");
  stopping = false;
  session = null;
  totalSamples = 0;
  backlog = [];
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    const context = new AudioContext();
    await context.audioWorklet.addModule(page.dataset.workletUrl);
    const node = new AudioWorkletNode(context, "pcm-recorder", { processorOptions: { frameSeconds: FRAME_SECONDS } });
    node.port.onmessage = (event) => onFrame(event.data);
    const mute = context.createGain();
    mute.gain.value = 0; // keep the graph pulled without playing the microphone back
    context.createMediaStreamSource(stream).connect(node).connect(mute).connect(context.destination);
    audio = { context, stream, node };
  } catch (error) {
    notice(`Microphone unavailable: ${error.message}`);
    startButton.disabled = false;
    return;
  }
  stopButton.disabled = false;
  setStatus("Connecting…");
  connect();
}

function stop() {
  stopping = true;
  stopButton.disabled = true;
  if (audio) {
    audio.stream.getTracks().forEach((track) => track.stop());
    audio.node.port.onmessage = null;
    audio.context.close();
    audio = null;
  }
  setStatus("Finishing…");
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "stop" }));
}

startButton.addEventListener("click", start);
stopButton.addEventListener("click", stop);
