// The chat page: conversation, settings, streaming and the two modes (server / in-browser).
// Model output is only ever inserted as text (textContent), never as HTML.
import { describeError } from './errors.js';
import { serverInfo, streamChat } from './server.js';

// The page is served at <prefix>/chat, so '.' is <prefix>/ behind any proxy or path prefix.
const BASE = new URL('.', document.baseURI);
const KEYS = {
  history: 'nimbus.chat.history',
  settings: 'nimbus.chat.settings',
  apiKey: 'nimbus.chat.apiKey', // sessionStorage: gone when the tab closes
};
const $ = (id) => document.getElementById(id);
const ui = {
  log: $('log'),
  error: $('error'),
  stats: $('stats'),
  composer: $('composer'),
  prompt: $('prompt'),
  send: $('send'),
  stop: $('stop'),
  system: $('system'),
  temperature: $('temperature'),
  maxTokens: $('max-tokens'),
  apiKey: $('api-key'),
  clear: $('clear'),
  modelName: $('model-name'),
  browserStatus: $('browser-status'),
};

let history = load(localStorage, KEYS.history, []);
let running = null; // AbortController of the reply in progress
let browserModel = null; // created on first use of the in-browser mode
let serverModel = 'the server';

function load(storage, key, fallback) {
  try {
    return JSON.parse(storage.getItem(key)) ?? fallback;
  } catch {
    return fallback;
  }
}

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

function params() {
  return {
    temperature: Number(ui.temperature.value),
    maxTokens: Math.trunc(Number(ui.maxTokens.value)),
  };
}

function saveSettings() {
  localStorage.setItem(
    KEYS.settings,
    JSON.stringify({ system: ui.system.value, ...params(), mode: mode() }),
  );
  sessionStorage.setItem(KEYS.apiKey, ui.apiKey.value);
}

function restoreSettings() {
  const saved = load(localStorage, KEYS.settings, {});
  if (typeof saved.system === 'string') ui.system.value = saved.system;
  if (Number.isFinite(saved.temperature)) ui.temperature.value = saved.temperature;
  if (Number.isFinite(saved.maxTokens)) ui.maxTokens.value = saved.maxTokens;
  if (saved.mode === 'browser') document.querySelector('input[value="browser"]').checked = true;
  ui.apiKey.value = sessionStorage.getItem(KEYS.apiKey) ?? '';
}

function addMessage(role, text = '', meta = '') {
  const box = document.createElement('div');
  box.className = `msg ${role}`;
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  const note = document.createElement('div');
  note.className = 'meta';
  note.textContent = meta;
  box.append(body, note);
  ui.log.append(box);
  ui.log.scrollTop = ui.log.scrollHeight;
  return { box, body, note };
}

function render() {
  ui.log.replaceChildren();
  for (const m of history) addMessage(m.role, m.content, m.meta ?? '');
}

function showError(text) {
  ui.error.textContent = text;
  ui.error.hidden = !text;
}

function fmt(n, digits) {
  return Number.isFinite(n) ? n.toFixed(digits) : '–';
}

// Live figures: time to first token, and decode speed after it (tokens 2..n over their time).
class Meter {
  constructor(modeName) {
    this.mode = modeName;
    this.started = performance.now();
    this.first = null;
    this.last = null;
    this.tokens = 0;
  }
  token() {
    const now = performance.now();
    this.first ??= now;
    this.last = now;
    this.tokens += 1;
  }
  get ttftMs() {
    return this.first === null ? NaN : this.first - this.started;
  }
  get tokPerS() {
    return this.tokens > 1 ? ((this.tokens - 1) * 1000) / (this.last - this.first) : NaN;
  }
  text(state) {
    return (
      `${state} · ${this.mode} · TTFT ${fmt(this.ttftMs, 0)} ms · ` +
      `${fmt(this.tokPerS, 1)} tok/s · ${this.tokens} tokens`
    );
  }
}

function showStats(meter, state) {
  ui.stats.textContent = meter.text(state);
  Object.assign(ui.stats.dataset, {
    state,
    mode: meter.mode,
    tokens: String(meter.tokens),
    tokPerS: fmt(meter.tokPerS, 2),
    ttftMs: fmt(meter.ttftMs, 0),
  });
}

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
}

async function ensureBrowserModel() {
  if (browserModel?.ready) return;
  const { BrowserModel } = await import('./browser.js');
  browserModel ??= new BrowserModel(BASE);
  const status = (text) => {
    ui.browserStatus.textContent = text;
  };
  ui.browserStatus.dataset.state = 'loading';
  try {
    const source = await browserModel.load(ui.apiKey.value, status);
    status(`In-browser model ready (${source}, ${browserModel.threads} thread(s)).`);
    ui.browserStatus.dataset.state = 'ready';
  } catch (error) {
    ui.browserStatus.dataset.state = 'error';
    status('');
    throw error;
  }
}

async function send() {
  const text = ui.prompt.value.trim();
  if (!text || running) return;
  saveSettings();
  showError('');
  const where = mode();
  const messages = [];
  if (ui.system.value.trim()) messages.push({ role: 'system', content: ui.system.value.trim() });
  messages.push(...history.map(({ role, content }) => ({ role, content })), {
    role: 'user',
    content: text,
  });
  history.push({ role: 'user', content: text });
  addMessage('user', text);
  ui.prompt.value = '';
  running = new AbortController();
  setBusy(true);
  const label = where === 'server' ? `server (${serverModel})` : 'in-browser (WebAssembly)';
  let meter = new Meter(label);
  const reply = addMessage('assistant');
  const output = document.createTextNode('');
  reply.body.append(output);
  let state = 'done';
  try {
    if (where === 'browser') {
      ui.stats.textContent = 'Loading the in-browser model…';
      ui.stats.dataset.state = 'loading';
      await ensureBrowserModel();
      meter = new Meter(`in-browser (WebAssembly, ${browserModel.threads} thread(s))`);
    }
    showStats(meter, 'streaming');
    const onToken = (piece) => {
      meter.token();
      output.appendData(piece);
      showStats(meter, 'streaming');
      ui.log.scrollTop = ui.log.scrollHeight;
    };
    const args = { messages, params: params(), signal: running.signal, onToken };
    const result =
      where === 'server'
        ? await streamChat({ base: BASE, apiKey: ui.apiKey.value, ...args })
        : await browserModel.chat(args);
    if (result.usage) meter.tokens = result.usage.completion_tokens;
  } catch (error) {
    if (error?.name === 'AbortError' || running.signal.aborted) {
      state = 'stopped';
    } else {
      state = 'error';
      showError(describeError(error));
    }
  } finally {
    running = null;
    setBusy(false);
    showStats(meter, state);
    reply.note.textContent = meter.text(state);
    if (output.data) {
      history.push({ role: 'assistant', content: output.data, meta: reply.note.textContent });
    } else {
      reply.box.remove();
    }
    localStorage.setItem(KEYS.history, JSON.stringify(history));
  }
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  send();
});
ui.prompt.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey) {
    event.preventDefault();
    send();
  }
});
ui.stop.addEventListener('click', () => running?.abort());
ui.clear.addEventListener('click', () => {
  history = [];
  localStorage.removeItem(KEYS.history);
  render();
  showError('');
});
for (const input of [ui.system, ui.temperature, ui.maxTokens, ui.apiKey]) {
  input.addEventListener('change', saveSettings);
}
for (const radio of document.querySelectorAll('input[name="mode"]')) {
  radio.addEventListener('change', () => {
    saveSettings();
    if (mode() === 'browser') ensureBrowserModel().catch((e) => showError(describeError(e)));
  });
}

restoreSettings();
render();
serverInfo(BASE)
  .then(({ model, status }) => {
    serverModel = model;
    ui.modelName.textContent = `${model} (${status})`;
  })
  .catch(() => {
    ui.modelName.textContent = 'server unreachable';
  });
if (mode() === 'browser') ensureBrowserModel().catch((e) => showError(describeError(e)));
document.body.dataset.ready = 'true';
