// flowomni voice chat page: microphone -> WebSocket (/ws, protocol at /protocol) -> live text,
// gapless audio and a waveform/mel view of each answer. Plain JS, no build step.
'use strict';

const MIC_RATE = 16000; // what we ask the capture AudioContext for (the server resamples anything else)
const $ = (id) => document.getElementById(id);

// Counters for tests and curious users (window.flowomniStats in the console).
const stats = window.flowomniStats = {
  connected: false, ready: false, turns: 0, done: 0, interrupted: 0, errors: 0, busy: 0, lastError: null,
  answerText: '', textChars: 0, audioChunks: 0, audioSamples: 0, chunksPlayed: 0, secondsPlayed: 0,
  underruns: 0, micChunks: 0, micSent: 0, speechStarts: 0, lastTimings: null, lastClientFirstAudioMs: null,
};

let ws = null, outRate = 22050, micRate = MIC_RATE;
let mic = null;           // {ctx, node, stream}
let sending = false;      // microphone chunks go to the server
let handsFree = false;
let answer = null;        // the answer being received: {turn, el, textEl, metaEl, tEnd, firstAudio}
let tEnd = null;          // when the user's turn ended (performance.now), for the client-side latency
let dropAudio = false;    // after an interrupt, until the interrupted answer's `done`
let playCtx = null, nextTime = 0;
const sources = new Set();

// ---------- connection ----------
function mode() { return document.querySelector('input[name=mode]:checked').value; }

function send(msg) {
  if (!ws || ws.readyState !== WebSocket.OPEN) { addNote('not connected', true); return false; }
  ws.send(typeof msg === 'string' || msg instanceof ArrayBuffer ? msg : JSON.stringify(msg));
  return true;
}

function sendStart() {
  if (ws && ws.readyState === WebSocket.OPEN) {
    send({ type: 'start', sample_rate: micRate, format: 'pcm_s16le', mode: mode(), speak: $('speak').checked });
  }
}

// A server with an API key is opened as http://host:port/#key=KEY: the key (never sent in the
// URL) rides as a WebSocket subprotocol, since browsers cannot set an Authorization header.
function connect() {
  const key = new URLSearchParams(location.hash.slice(1)).get('key');
  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws',
                     key ? ['flowomni', 'openai-insecure-api-key.' + key] : undefined);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { stats.connected = true; setStatus('connected', 'ok'); sendStart(); };
  ws.onclose = (e) => {
    stats.connected = stats.ready = false;
    setStatus(`disconnected (${e.code})${e.code === 1013 ? ': server busy' : ''}, retrying…`, 'bad');
    setTimeout(connect, 2000);
  };
  ws.onmessage = (e) => (typeof e.data === 'string' ? onJson(JSON.parse(e.data)) : onAudio(e.data));
}

function setStatus(text, cls) { const s = $('status'); s.textContent = text; s.className = cls || ''; }

function onJson(m) {
  switch (m.type) {
    case 'ready': stats.ready = true; outRate = m.output_sample_rate; setStatus(`connected · ${m.mode}`, 'ok'); break;
    case 'speech':
      if (m.state === 'start') { // the user talks: the server stops the answer (barge-in), we stop playing it
        stats.speechStarts++; stopPlayback(); if (answer) dropAudio = true; $('hint').textContent = 'listening…';
      }
      else $('hint').textContent = 'thinking…';
      break;
    case 'turn':
      stats.turns++;
      if (m.by === 'vad') { tEnd = performance.now(); addUser(`(spoken question, ${m.question_seconds.toFixed(1)} s)`); }
      beginAnswer(m.turn);
      break;
    case 'text':
      if (answer && m.turn === answer.turn) {
        answer.textEl.textContent += m.text; stats.answerText = answer.textEl.textContent; stats.textChars += m.text.length;
      }
      break;
    case 'done': finishAnswer(m); break;
    case 'busy': stats.busy++; addNote(`server busy: ${m.message}`, true); break;
    case 'error':
      stats.errors++; stats.lastError = m;
      addNote(`${m.code}: ${m.message}`, true);
      if (answer && m.turn === answer.turn) { if (!answer.textEl.textContent) answer.el.remove(); answer = null; }
      break;
  }
}

// ---------- transcript ----------
function addMsg(cls, text) {
  const el = document.createElement('div'); el.className = 'msg ' + cls;
  const t = document.createElement('div'); t.textContent = text; el.appendChild(t);
  const meta = document.createElement('div'); meta.className = 'meta'; el.appendChild(meta);
  $('log').appendChild(el); el.scrollIntoView({ block: 'end' });
  return { el, textEl: t, metaEl: meta };
}
function addUser(text) { addMsg('user', text); }
function addNote(text, isError) { addMsg(isError ? 'error' : '', text); }

function beginAnswer(turn) {
  dropAudio = false;
  answer = { turn, ...addMsg('bot', ''), tEnd: tEnd || performance.now(), firstAudio: null };
  view.reset();
  $('hint').textContent = handsFree ? 'answering… (talk to interrupt)' : 'answering…';
}

function finishAnswer(m) {
  if (m.interrupted) { stats.interrupted++; dropAudio = false; }
  stats.done++; stats.lastTimings = m.timings; stats.answerText = m.text;
  const a = answer && answer.turn === m.turn ? answer : null;
  if (a) {
    a.textEl.textContent = m.text || '(no text)';
    const t = m.timings, f = (x) => (x == null ? '–' : Math.round(x));
    a.metaEl.textContent = `${m.interrupted ? 'interrupted · ' : ''}first audio ${f(t.first_audio_ms)} ms` +
      (a.firstAudio != null ? ` (heard after ${f(a.firstAudio)} ms)` : '') +
      ` · first text ${f(t.first_text_ms)} ms · total ${f(t.total_ms)} ms · ${m.audio_seconds.toFixed(1)} s audio` +
      (t.rtf ? ` · RTF ${t.rtf.toFixed(2)}` : '');
    answer = null;
  }
  $('hint').textContent = handsFree ? 'listening… (just talk)' : 'Hold the button (or the space bar) while you speak.';
}

// ---------- playback: chunks scheduled back to back on one AudioContext ----------
function ensurePlayback() {
  if (!playCtx) playCtx = new AudioContext();
  if (playCtx.state === 'suspended') playCtx.resume();
}

function onAudio(buf) {
  if (dropAudio || !answer) return;
  const pcm16 = new Int16Array(buf), n = pcm16.length;
  const pcm = new Float32Array(n);
  for (let i = 0; i < n; i++) pcm[i] = pcm16[i] / 32768;
  stats.audioChunks++; stats.audioSamples += n;
  if (answer.firstAudio == null) { answer.firstAudio = performance.now() - answer.tEnd; stats.lastClientFirstAudioMs = answer.firstAudio; }
  view.push(pcm, outRate);
  ensurePlayback();
  const ab = playCtx.createBuffer(1, n, outRate);
  ab.copyToChannel(pcm, 0);
  const src = playCtx.createBufferSource();
  src.buffer = ab; src.connect(playCtx.destination);
  const now = playCtx.currentTime;
  if (nextTime < now) { if (nextTime > 0) stats.underruns++; nextTime = now + 0.05; } // small cushion after a gap
  src.start(nextTime); nextTime += ab.duration;
  sources.add(src);
  src.onended = () => { if (sources.delete(src)) { stats.chunksPlayed++; stats.secondsPlayed += ab.duration; } };
}

function stopPlayback() {
  for (const s of sources) { sources.delete(s); try { s.stop(); } catch (_) { /* not started */ } }
  nextTime = 0;
}

function interrupt() {
  stopPlayback();
  if (answer) { dropAudio = true; send({ type: 'interrupt' }); }
}

// ---------- microphone (AudioWorklet) ----------
async function ensureMic() {
  if (mic) return mic;
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true } });
  let ctx;
  try { ctx = new AudioContext({ sampleRate: MIC_RATE }); } catch (_) { ctx = new AudioContext(); }
  await ctx.audioWorklet.addModule('/static/mic-worklet.js');
  const node = new AudioWorkletNode(ctx, 'pcm-capture', { processorOptions: { chunk: Math.round(ctx.sampleRate * 0.04) } });
  node.port.onmessage = (e) => onMicChunk(e.data);
  ctx.createMediaStreamSource(stream).connect(node);
  node.connect(ctx.destination); // the node outputs silence; connecting keeps it pulled
  if (ctx.state === 'suspended') await ctx.resume();
  mic = { ctx, node, stream };
  if (ctx.sampleRate !== micRate) { micRate = ctx.sampleRate; sendStart(); }
  return mic;
}

let flushing = null;
function onMicChunk(d) {
  stats.micChunks++;
  $('meter').firstChild.style.width = Math.min(100, d.level * 400) + '%';
  if ((sending || d.flushed) && d.pcm.byteLength && ws && ws.readyState === WebSocket.OPEN) { ws.send(d.pcm); stats.micSent++; }
  if (d.flushed && flushing) { flushing(); flushing = null; }
}

let held = false; // the talk button is down
async function pttDown() {
  if (handsFree || held) return;
  held = true;
  ensurePlayback();
  interrupt(); // barge-in: talking over the answer stops it
  await ensureMic();
  if (!held) return; // released before the microphone was ready
  sending = true;
  $('talk').classList.add('on'); $('talk').textContent = 'Listening…';
}

function pttUp() {
  if (handsFree || !held) return;
  held = false;
  if (!sending) return;
  sending = false;
  $('talk').classList.remove('on'); $('talk').textContent = 'Hold to talk';
  tEnd = performance.now();
  flushing = () => { if (send({ type: 'end_of_turn' })) addUser('(spoken question)'); };
  mic.node.port.postMessage('flush');
}

async function setHandsFree(on) {
  ensurePlayback();
  if (on) await ensureMic();
  handsFree = on; sending = on;
  document.querySelector(`input[name=mode][value=${on ? 'vad' : 'ptt'}]`).checked = true;
  sendStart(); // mode changes take effect with a fresh start
  $('talk').textContent = on ? 'Hands-free on' : 'Hold to talk';
  $('talk').classList.toggle('on', on);
  $('hint').textContent = on ? 'listening… (just talk)' : 'Hold the button (or the space bar) while you speak.';
}

function ask(text) {
  text = text.trim();
  if (!text) return;
  ensurePlayback(); stopPlayback();
  if (answer) dropAudio = true; // the server interrupts the running answer itself
  tEnd = performance.now();
  if (send({ type: 'text', text })) addUser(text);
}

// ---------- answer view: waveform (top) and mel spectrogram (bottom), drawn as audio arrives ----------
const view = (() => {
  const cv = $('view'), g = cv.getContext('2d'), W = cv.width, H = cv.height, half = H / 2;
  const N = 1024, HOP = 256, MELS = 64, SPAN = 8; // seconds across the canvas (longer answers: the first 8 s)
  const win = new Float32Array(N).map((_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / N));
  let pcm = new Float32Array(0), frames = 0, rate = 22050, fb = null, x = 0;

  function melBank(sr) { // Slaney-ish triangular filters on the mel scale, 0..8 kHz
    const mel = (f) => 2595 * Math.log10(1 + f / 700), hz = (m) => 700 * (10 ** (m / 2595) - 1);
    const pts = Array.from({ length: MELS + 2 }, (_, i) => hz((mel(Math.min(8000, sr / 2)) * i) / (MELS + 1)));
    return Array.from({ length: MELS }, (_, m) => {
      const w = new Float32Array(N / 2 + 1);
      for (let k = 0; k <= N / 2; k++) {
        const f = (k * sr) / N, lo = pts[m], c = pts[m + 1], hi = pts[m + 2];
        w[k] = Math.max(0, Math.min((f - lo) / (c - lo), (hi - f) / (hi - c)));
      }
      return w;
    });
  }

  function power(frame) { // radix-2 FFT, returns |X|^2 for bins 0..N/2
    const re = Float32Array.from(frame, (v, i) => v * win[i]), im = new Float32Array(N);
    for (let i = 1, j = 0; i < N; i++) {
      let b = N >> 1; for (; j & b; b >>= 1) j ^= b; j ^= b;
      if (i < j) { [re[i], re[j]] = [re[j], re[i]]; }
    }
    for (let len = 2; len <= N; len <<= 1) {
      const a = (-2 * Math.PI) / len, wr = Math.cos(a), wi = Math.sin(a);
      for (let i = 0; i < N; i += len) {
        let cr = 1, ci = 0;
        for (let k = 0; k < len / 2; k++) {
          const p = i + k, q = p + len / 2, tr = re[q] * cr - im[q] * ci, ti = re[q] * ci + im[q] * cr;
          re[q] = re[p] - tr; im[q] = im[p] - ti; re[p] += tr; im[p] += ti;
          [cr, ci] = [cr * wr - ci * wi, cr * wi + ci * wr];
        }
      }
    }
    return Float32Array.from({ length: N / 2 + 1 }, (_, k) => re[k] * re[k] + im[k] * im[k]);
  }

  function reset() { pcm = new Float32Array(0); frames = 0; x = 0; g.fillStyle = '#10151b'; g.fillRect(0, 0, W, H); }

  function push(chunk, sr) {
    if (sr !== rate || !fb) { rate = sr; fb = melBank(sr); }
    const start = pcm.length, all = new Float32Array(start + chunk.length);
    all.set(pcm); all.set(chunk, start); pcm = all;
    const pxPerSample = W / (SPAN * rate);
    // waveform: min/max per pixel column of the new samples
    g.fillStyle = '#5fb3ff';
    for (let px = Math.floor(start * pxPerSample); px < Math.floor(pcm.length * pxPerSample) && px < W; px++) {
      const a = Math.floor(px / pxPerSample), b = Math.min(pcm.length, Math.floor((px + 1) / pxPerSample));
      let lo = 0, hi = 0; for (let i = a; i < b; i++) { lo = Math.min(lo, pcm[i]); hi = Math.max(hi, pcm[i]); }
      g.fillRect(px, half / 2 - hi * half / 2, 1, Math.max(1, (hi - lo) * half / 2));
    }
    // mel spectrogram: one column per hop, log power mapped to a blue-yellow ramp
    for (; frames * HOP + N <= pcm.length; frames++) {
      const p = power(pcm.subarray(frames * HOP, frames * HOP + N));
      const x0 = frames * HOP * pxPerSample, w = Math.max(1, HOP * pxPerSample + 0.5);
      if (x0 >= W) break;
      for (let m = 0; m < MELS; m++) {
        let e = 0; const f = fb[m]; for (let k = 0; k < f.length; k++) e += f[k] * p[k];
        const v = Math.max(0, Math.min(1, (10 * Math.log10(e + 1e-10) + 50) / 80)); // -50..30 dB
        g.fillStyle = `hsl(${240 - 180 * v}, 80%, ${8 + 55 * v}%)`;
        g.fillRect(x0, H - ((m + 1) * half) / MELS, w, half / MELS + 0.5);
      }
      x = x0;
    }
  }
  reset();
  return { reset, push, get frames() { return frames; } };
})();

// ---------- wiring ----------
$('talk').addEventListener('pointerdown', (e) => { e.preventDefault(); if (!handsFree) pttDown(); else setHandsFree(false); });
$('talk').addEventListener('pointerup', pttUp);
$('talk').addEventListener('pointerleave', pttUp);
document.addEventListener('keydown', (e) => { if (e.code === 'Space' && e.target.tagName !== 'INPUT' && !e.repeat) { e.preventDefault(); pttDown(); } });
document.addEventListener('keyup', (e) => { if (e.code === 'Space' && e.target.tagName !== 'INPUT') { e.preventDefault(); pttUp(); } });
document.querySelectorAll('input[name=mode]').forEach((r) => r.addEventListener('change', () => setHandsFree(mode() === 'vad')));
$('speak').addEventListener('change', sendStart);
$('stop').addEventListener('click', interrupt);
$('reset').addEventListener('click', () => { interrupt(); send({ type: 'reset' }); $('log').textContent = ''; view.reset(); });
$('ask').addEventListener('submit', (e) => { e.preventDefault(); ask($('question').value); $('question').value = ''; });
$('proto').addEventListener('toggle', async () => { $('protoText').textContent = await (await fetch('/protocol')).text(); }, { once: true });

// for scripted use (the browser test drives the page through these)
window.flowomni = { pttDown, pttUp, setHandsFree, ask, interrupt, view };
connect();
