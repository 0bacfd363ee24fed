// Microphone capture in the audio thread: float samples -> 16-bit PCM chunks for the socket.
// The page's capture AudioContext runs at the rate declared to the server (16 kHz when the
// browser allows it), so no resampling happens here. Posts {pcm: ArrayBuffer, level} every
// `chunk` samples; on 'flush' posts the partial chunk too, with {flushed: true}.
class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.chunk = (options.processorOptions && options.processorOptions.chunk) || 640;
    this.buf = new Int16Array(this.chunk);
    this.n = 0;
    this.sumSq = 0;
    this.port.onmessage = (e) => { if (e.data === 'flush') this.post(true); };
  }

  post(flushed) {
    const pcm = this.buf.slice(0, this.n).buffer;
    const level = this.n ? Math.sqrt(this.sumSq / this.n) : 0;
    this.port.postMessage({ pcm, level, flushed }, [pcm]);
    this.n = 0;
    this.sumSq = 0;
  }

  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) {
      for (let i = 0; i < ch.length; i++) {
        const s = Math.max(-1, Math.min(1, ch[i]));
        this.buf[this.n++] = s < 0 ? s * 32768 : s * 32767;
        this.sumSq += s * s;
        if (this.n === this.chunk) this.post(false);
      }
    }
    return true;
  }
}
registerProcessor('pcm-capture', PcmCapture);
