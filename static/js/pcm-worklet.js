// On the audio thread: the microphone mixed to mono, downsampled to 16 kHz (each output sample
// is the mean of the input samples it covers), and posted as little-endian PCM16 frames.
const TARGET_RATE = 16000;

class PcmRecorder extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameSeconds = options.processorOptions?.frameSeconds ?? 0.16;
    this.ratio = sampleRate / TARGET_RATE; // sampleRate: the context's, a global here
    this.frameLength = Math.round(TARGET_RATE * frameSeconds);
    this.frame = new Int16Array(this.frameLength);
    this.filled = 0;
    this.phase = 0;
    this.sum = 0;
    this.count = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channels = input.length;
    for (let i = 0; i < input[0].length; i++) {
      let value = 0;
      for (let c = 0; c < channels; c++) value += input[c][i];
      this.sum += value / channels;
      this.count += 1;
      this.phase += 1;
      if (this.phase >= this.ratio) {
        this.phase -= this.ratio;
        const s = Math.max(-1, Math.min(1, this.sum / this.count));
        this.frame[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
        this.sum = 0;
        this.count = 0;
        if (this.filled === this.frameLength) {
          // Transferred, not copied: the old buffer is detached, so a new one is made.
          this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
          this.frame = new Int16Array(this.frameLength);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("pcm-recorder", PcmRecorder);
