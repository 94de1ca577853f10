// pipeline dashboard: plain JavaScript, no dependencies, no build step.
// Every number comes from the producer's API with the tokens the user
// typed, kept in sessionStorage (this tab only). Without a required token
// nothing is fetched and nothing is shown.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 2000;
  const TOKEN_KEYS = { api: 'pipeline.apiToken', admin: 'pipeline.adminToken' };
  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  let access = null; // {api_token, admin} from dashboard/api/access
  let currentView = null;
  let pollTimer = null;
  let paused = false;
  let batchesSupported = null;

  // ---------- helpers ----------
  function token(kind) {
    try { return sessionStorage.getItem(TOKEN_KEYS[kind]) || ''; } catch (_) { return ''; }
  }
  function setToken(kind, value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEYS[kind], value);
      else sessionStorage.removeItem(TOKEN_KEYS[kind]);
    } catch (_) { /* storage disabled: the token lives until reload */ }
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') node.className = v;
      else if (k === 'text') node.textContent = v;
      else if (k.startsWith('data-')) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.error) || 'HTTP ' + status);
      this.status = status;
      this.body = body;
    }
  }

  // Paths are relative to /dashboard, so a proxy prefix keeps working.
  async function api(path, { method = 'GET', admin = false } = {}) {
    const headers = { Accept: 'application/json' };
    const t = token(admin ? 'admin' : 'api');
    if (t) headers.Authorization = 'Bearer ' + t;
    let res;
    try {
      res = await fetch(path, { method, headers, cache: 'no-store' });
    } catch (e) {
      throw new HttpError(0, { error: 'the producer does not answer (' + e.message + ')' });
    }
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    if (res.status === 401 && !admin) {
      askForToken('The API token was refused: enter the right one.');
    }
    if (!res.ok) throw new HttpError(res.status, body);
    return body;
  }

  function notice(text, kind) {
    const n = $('notice');
    if (!text) { n.hidden = true; return; }
    n.textContent = text;
    n.className = kind || '';
    n.hidden = false;
  }

  function fmtTime(iso) {
    if (!iso) return '–';
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const today = new Date().toDateString() === d.toDateString();
    const time = d.toLocaleTimeString(undefined, { hour12: false });
    return today ? time : d.toLocaleDateString() + ' ' + time;
  }
  function timeCell(iso) {
    return el('td', { class: 'time', text: fmtTime(iso), title: iso || '' });
  }
  function fmtRate(x) {
    if (x == null) return '–';
    return x >= 100 ? Math.round(x).toLocaleString() : x.toFixed(1);
  }
  function fmtCount(x) { return x == null ? '–' : Number(x).toLocaleString(); }
  function shortId(id) { return id ? id.slice(0, 8) + '…' : '(no id)'; }
  // Only a UUID goes into a URL: anyone who may publish to the broker can
  // give a message any id, and an id such as "." or ".." would make
  // 'dead-letters/' + id + '/redrive' another route once the browser
  // resolves the dots (dead-letters/./redrive is the one that redrives
  // every dead letter).
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  function isUuid(id) { return typeof id === 'string' && UUID.test(id); }
  function idLink(id) {
    if (!id) return el('span', { class: 'muted', text: '(no id)' });
    if (!isUuid(id)) return el('span', { class: 'mono', text: shortId(id), title: id + ' (not a UUID)' });
    return el('a', { href: '#/messages/' + encodeURIComponent(id), class: 'mono', text: shortId(id), title: id, 'data-id': id });
  }

  // ---------- confirmation ----------
  function confirmAction(text, okLabel, danger, keepLabel = 'Cancel') {
    const dialog = $('confirm');
    $('confirm-text').textContent = text;
    $('confirm-cancel').textContent = keepLabel;
    const ok = $('confirm-ok');
    ok.textContent = okLabel;
    ok.className = danger ? 'danger' : '';
    return new Promise((resolve) => {
      const done = (answer) => {
        ok.onclick = null;
        $('confirm-cancel').onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      ok.onclick = () => done(true);
      $('confirm-cancel').onclick = () => done(false);
      dialog.onclose = () => done(false); // Esc
      dialog.showModal();
      $('confirm-cancel').focus(); // the safe choice has the focus
    });
  }

  // ---------- access ----------
  function tokenMissing() {
    return access && access.api_token && !token('api');
  }
  function askForToken(why) {
    stopPolling();
    for (const v of document.querySelectorAll('.view')) v.hidden = true;
    $('token-why').textContent = why;
    $('token-panel').hidden = false;
    $('api-token').value = token('api');
    $('admin-token').value = token('admin');
    $('api-token').focus();
  }

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    setToken('api', $('api-token').value.trim());
    setToken('admin', $('admin-token').value.trim());
    $('token-panel').hidden = true;
    notice('');
    route(true);
  });
  $('token-forget').addEventListener('click', () => {
    setToken('api', '');
    setToken('admin', '');
    location.reload(); // a clean page: nothing fetched with the old tokens stays on screen
  });
  $('token-button').addEventListener('click', () => {
    askForToken('Tokens are kept in this tab only (sessionStorage) and sent to this producer alone.' +
      (access && access.api_token ? ' This producer requires the API token.' : ' This producer needs no API token.') +
      (access && access.admin ? '' : ' Its dead-letter tools are off (no ADMIN_TOKEN).'));
  });

  // ---------- routing ----------
  const VIEWS = ['overview', 'messages', 'message', 'dead-letters', 'batches'];
  function route(focus) {
    const parts = (location.hash || '#/overview').replace(/^#\/?/, '').split('/');
    let view = parts[0] || 'overview';
    let arg = parts[1] ? decodeURIComponent(parts[1]) : null;
    if (view === 'messages' && arg) view = 'message';
    if (!VIEWS.includes(view)) view = 'overview';
    stopPolling();
    notice('');
    for (const a of document.querySelectorAll('.top nav a')) {
      const match = a.dataset.view === view || (view === 'message' && a.dataset.view === 'messages');
      if (match) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    if (!access) return; // still loading
    if (tokenMissing()) {
      askForToken('This producer requires a token (API_TOKEN). It is kept in this tab only (sessionStorage).');
      return;
    }
    $('token-panel').hidden = true;
    for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== 'view-' + view;
    currentView = view;
    if (focus) {
      const h = document.querySelector('#view-' + view + ' h2');
      if (h) { h.tabIndex = -1; h.focus({ preventScroll: true }); }
    }
    if (view === 'overview') pollOverview();
    else if (view === 'messages') loadMessages();
    else if (view === 'message') loadMessage(arg);
    else if (view === 'dead-letters') loadDeadLetters();
    else if (view === 'batches') loadBatches(arg);
  }
  window.addEventListener('hashchange', () => route(true));

  // ---------- overview ----------
  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
  }
  function schedulePoll() {
    stopPolling();
    if (currentView === 'overview' && !paused) pollTimer = setTimeout(pollOverview, POLL_MS);
  }
  async function pollOverview() {
    stopPolling();
    if (document.hidden) return; // resumed on visibilitychange
    try {
      const o = await api('dashboard/api/overview');
      if (currentView !== 'overview') return;
      renderOverview(o);
      $('ov-updated').textContent = 'updated ' + fmtTime(o.now);
    } catch (e) {
      if (e.status === 401) return;
      $('ov-updated').textContent = 'update failed: ' + e.message;
    }
    schedulePoll();
  }
  function badge(node, value) {
    node.textContent = value;
    node.className = 'badge ' + value;
  }
  function renderOverview(o) {
    badge($('ov-broker'), o.broker);
    badge($('ov-database'), o.database);
    $('ov-rate-accepted').textContent = fmtRate(o.rates.accepted);
    $('ov-rate-stored').textContent = fmtRate(o.rates.stored);
    $('ov-rate-dead').textContent = fmtRate(o.rates.dead_lettered);
    $('ov-total-accepted').textContent = fmtCount(o.totals.accepted);
    $('ov-total-stored').textContent = fmtCount(o.totals.stored);
    $('ov-total-dead').textContent = fmtCount(o.totals.dead_lettered);
    const q = o.queue;
    $('ov-ready').textContent = q ? fmtCount(q.ready) : '–';
    $('ov-consumers').textContent = q ? fmtCount(q.consumers) : '–';
    $('ov-dead-queue').textContent = q ? fmtCount(q.dead) : '–';
    const inFlight = $('ov-inflight');
    const known = q && q.in_flight != null;
    inFlight.textContent = known ? fmtCount(q.in_flight) : 'n/a';
    inFlight.title = known ? 'from the RabbitMQ management API (sampled every few seconds)'
      : 'RabbitMQ does not report unacknowledged deliveries over AMQP: set RABBITMQ_MANAGEMENT_URL on the producer';
    drawChart(o.series, o.step_secs);
    renderKinds(o.kinds || []);
    renderStorage(o.tables, o.retention);
    renderScheduled(o.scheduled);
  }
  // Each configured kind's row; the names also fill the messages filter.
  function renderKinds(kinds) {
    $('ov-kinds').tBodies[0].replaceChildren(...kinds.map((k) => el('tr', { 'data-kind': k.kind },
      el('th', { scope: 'row', text: k.kind }),
      el('td', { class: 'ready', text: k.queue ? fmtCount(k.queue.ready) : '–', title: k.queue ? k.queue.queues + ' queue(s)' : 'the broker did not answer' }),
      el('td', { class: 'consumers', text: k.queue ? fmtCount(k.queue.consumers) : '–' }),
      el('td', { class: 'accepted', text: fmtRate(k.rates.accepted) }),
      el('td', { class: 'stored', text: fmtRate(k.rates.stored) }),
      el('td', { class: 'dead hide-narrow', text: fmtRate(k.rates.dead_lettered) }))));
    setKindChoices(kinds.map((k) => k.kind));
  }
  function fmtBytes(n) {
    if (n == null) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0, v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(1)) + ' ' + units[i];
  }
  // Text only (textContent): nothing from the server is parsed as HTML.
  function renderStorage(tables, r) {
    const kept = {
      messages: r.messages + ' (partitions of a ' + r.message_partition + ')',
      dead_letters: r.dead_letters + ' once stored',
      idempotency_keys: r.idempotency_key_ttl,
      batches: r.batches + ' once completed',
      webhook_deliveries: r.webhooks,
      scheduled_messages: r.scheduled ? 'waiting ones always; ' + r.scheduled + ' once stored or cancelled' : null,
    };
    const body = $('ov-tables');
    const rows = (tables || []).map((t) => {
      const tr = document.createElement('tr');
      for (const text of [t.table, fmtCount(t.rows), fmtBytes(t.bytes), kept[t.table] || '–']) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    });
    body.replaceChildren(...rows);
    $('ov-retention').textContent = 'Pruned every ' + r.interval + ', ' + r.batch + ' rows per statement, one producer and one consumer at a time.';
  }
  function drawChart(series, step) {
    const W = 600, H = 150, PAD = 3;
    const perSec = (a) => a.map((n) => n / step);
    const lines = { accepted: perSec(series.accepted), stored: perSec(series.stored), dead: perSec(series.dead_lettered) };
    let peak = 0;
    for (const a of Object.values(lines)) for (const v of a) peak = Math.max(peak, v);
    const top = Math.max(1, peak * 1.1);
    for (const [name, values] of Object.entries(lines)) {
      const n = values.length;
      const points = values.map((v, i) => {
        const x = n > 1 ? (i / (n - 1)) * W : 0;
        const y = H - PAD - (v / top) * (H - 2 * PAD);
        return x.toFixed(1) + ',' + y.toFixed(1);
      });
      $('ov-line-' + name).setAttribute('points', points.join(' '));
    }
    $('ov-peak').textContent = fmtRate(peak);
    $('ov-chart').setAttribute('aria-label', 'Messages per second over the last 5 minutes; now: accepted ' +
      fmtRate(lines.accepted.at(-1)) + ', stored ' + fmtRate(lines.stored.at(-1)) +
      ', dead-lettered ' + fmtRate(lines.dead.at(-1)) + '; peak ' + fmtRate(peak));
  }
  $('ov-pause').addEventListener('click', () => {
    paused = !paused;
    $('ov-pause').textContent = paused ? 'Resume' : 'Pause';
    $('ov-pause').setAttribute('aria-pressed', String(paused));
    if (paused) stopPolling(); else pollOverview();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && currentView === 'overview' && !paused) pollOverview();
  });

  // ---------- messages ----------
  const pages = { cursors: [null], index: 0, next: null };
  // The kinds to filter by: the configured ones, as the overview lists them.
  let kindChoices = null;
  function setKindChoices(names) {
    if (kindChoices && kindChoices.join(',') === names.join(',')) return;
    kindChoices = names;
    const select = $('msg-kind');
    const chosen = select.value;
    select.replaceChildren(el('option', { value: '', text: 'all kinds' }),
      ...names.map((n) => el('option', { value: n, text: n })));
    select.value = names.includes(chosen) ? chosen : '';
  }
  async function loadKindChoices() {
    if (kindChoices) return;
    try {
      const o = await api('dashboard/api/overview');
      setKindChoices((o.kinds || []).map((k) => k.kind));
    } catch (_) { /* the list still works unfiltered */ }
  }
  async function loadMessages() {
    loadKindChoices();
    const cursor = pages.cursors[pages.index];
    const kind = $('msg-kind').value;
    const path = 'dashboard/api/messages?limit=25' + (cursor ? '&before=' + encodeURIComponent(cursor) : '') +
      (kind ? '&kind=' + encodeURIComponent(kind) : '');
    const tbody = $('msg-table').tBodies[0];
    try {
      const page = await api(path);
      tbody.replaceChildren(...page.messages.map((m) => el('tr', { 'data-id': m.id },
        timeCell(m.created_at),
        el('td', { class: 'id' }, idLink(m.id)),
        el('td', { class: 'kind', text: m.kind || 'default' }),
        el('td', { class: 'preview', text: m.preview + (m.truncated ? '…' : '') }),
        el('td', { class: 'time hide-narrow', text: fmtTime(m.stored_at), title: m.stored_at }))));
      pages.next = page.next;
      $('msg-empty').hidden = page.messages.length > 0 || pages.index > 0;
      $('msg-older').disabled = !page.next;
      $('msg-newer').disabled = pages.index === 0;
      $('msg-page').textContent = 'page ' + (pages.index + 1);
    } catch (e) {
      if (e.status !== 401) notice('Cannot list messages: ' + e.message, 'bad');
    }
  }
  $('msg-older').addEventListener('click', () => {
    if (!pages.next) return;
    pages.cursors[pages.index + 1] = pages.next;
    pages.index += 1;
    loadMessages();
  });
  $('msg-newer').addEventListener('click', () => {
    if (pages.index === 0) return;
    pages.index -= 1;
    loadMessages();
  });
  $('msg-refresh').addEventListener('click', () => { pages.index = 0; loadMessages(); });
  // Another kind is another list: from its first page.
  $('msg-kind').addEventListener('change', () => {
    pages.cursors = [null];
    pages.index = 0;
    loadMessages();
  });
  $('lookup-id').addEventListener('submit', (e) => {
    e.preventDefault();
    const id = $('lookup-id-input').value.trim();
    if (!UUID_RE.test(id)) { notice('A message id is a UUID, such as 5f3ed146-e8b3-4cf8-b54d-1e9725c17f76.', 'bad'); return; }
    location.hash = '#/messages/' + id.toLowerCase();
  });
  $('lookup-key').addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = $('lookup-key-input').value;
    try {
      const r = await api('dashboard/api/idempotency-key?key=' + encodeURIComponent(key));
      if (r.id == null) { notice('That key is not bound: never used, or expired (IDEMPOTENCY_KEY_TTL).', 'bad'); return; }
      location.hash = '#/messages/' + r.id;
    } catch (err) {
      if (err.status !== 401) notice('Cannot look up that key: ' + err.message, 'bad');
    }
  });

  // ---------- one message ----------
  let shownMessage = null;
  function fill(id, text) { $(id).textContent = text == null || text === '' ? '–' : String(text); }
  async function loadMessage(id) {
    shownMessage = id;
    for (const f of ['m-kind', 'm-created', 'm-stored', 'm-latency', 'm-dead-at', 'm-attempts', 'm-reason', 'm-batch', 'm-webhook', 'm-content']) fill(f, null);
    $('m-id').textContent = id;
    $('m-actions').hidden = true;
    hideSchedule();
    badge($('m-status'), 'loading');
    if (!UUID_RE.test(id)) { badge($('m-status'), 'not_found'); notice('Not a message id: ' + id, 'bad'); return; }
    let m;
    try {
      m = await api('dashboard/api/messages/' + encodeURIComponent(id));
    } catch (e) {
      if (shownMessage !== id) return;
      if (e.status === 404) {
        badge($('m-status'), 'not_found');
        fill('m-content', 'Neither stored nor dead-lettered: still queued, or never accepted.');
      } else if (e.status !== 401) {
        notice('Cannot read the message: ' + e.message, 'bad');
      }
      return;
    }
    if (shownMessage !== id) return;
    badge($('m-status'), m.status);
    fill('m-kind', m.kind);
    fill('m-created', m.created_at && fmtTime(m.created_at) + '  (' + m.created_at + ')');
    fill('m-stored', m.stored_at && fmtTime(m.stored_at) + '  (' + m.stored_at + ')');
    if (m.created_at && m.stored_at) {
      const ms = new Date(m.stored_at) - new Date(m.created_at);
      fill('m-latency', ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s');
    }
    const d = m.dead_letter;
    if (d) {
      fill('m-dead-at', fmtTime(d.dead_lettered_at) + '  (' + d.dead_lettered_at + ')' +
        (m.status === 'stored' ? ' — later redriven and stored' : ''));
      fill('m-attempts', d.attempts);
      fill('m-reason', d.reason);
    }
    fill('m-content', m.content == null ? (m.status === 'dead_lettered' ? 'In the dead-letter queue (see Dead letters).' : null) : m.content);
    $('m-actions').hidden = !(m.status === 'dead_lettered' && access.admin && isUuid(id));
    showSchedule(m);
    // Batch and webhook state, once the API has them: read from the public
    // GET /messages/{id}, whose fields grow with those features.
    try {
      const pub = await api('messages/' + encodeURIComponent(id));
      if (shownMessage !== id) return;
      const batch = pub.batch_id || (pub.batch && pub.batch.id);
      if (batch) {
        $('m-batch').replaceChildren(el('a', { href: '#/batches/' + encodeURIComponent(batch), class: 'mono', text: batch }));
      } else {
        fill('m-batch', 'none (or not reported by this producer)');
      }
      const hook = pub.webhook || pub.notification || pub.callback;
      fill('m-webhook', hook ? (typeof hook === 'object'
        ? [hook.status, hook.attempts != null ? hook.attempts + ' attempts' : null, hook.last_answer || hook.last_status].filter((x) => x != null).join(' · ')
        : hook) : 'none (or not reported by this producer)');
    } catch (_) { /* the page already shows what the database knows */ }
  }
  $('m-redrive').addEventListener('click', async () => {
    const id = shownMessage;
    if (!isUuid(id)) return;
    if (!await confirmAction('Send message ' + id + ' back to the queue for another try?', 'Redrive')) return;
    try {
      await api('dead-letters/' + encodeURIComponent(id) + '/redrive', { method: 'POST', admin: true });
      notice('Redriven: ' + id + ' is queued again.', 'ok');
      $('m-actions').hidden = true;
    } catch (e) {
      notice('Redrive failed: ' + adminError(e), 'bad');
    }
  });

  // ---------- scheduled messages ----------
  // The overview's count, next due and soonest 20; a scheduled message's
  // fields and its Cancel button, which sends the API's own
  // DELETE /messages/{id} with the API token.
  function renderScheduled(s) {
    $('ov-scheduled').textContent = s ? fmtCount(s.waiting) : '–';
    const next = $('ov-next-due');
    next.textContent = s ? (s.next_due ? fmtTime(s.next_due) : 'none') : '–';
    next.title = (s && s.next_due) || '';
    const list = s ? s.next : [];
    $('sched-table').tBodies[0].replaceChildren(...list.map((m) => el('tr', { 'data-id': m.id },
      timeCell(m.deliver_at),
      el('td', { class: 'id' }, idLink(m.id)),
      el('td', { class: 'kind', text: m.kind }))));
    $('sched-empty').hidden = !s || list.length > 0;
  }
  function hideSchedule() {
    for (const f of ['m-deliver-at', 'm-sched-kind', 'm-cancelled-at']) fill(f, null);
    $('m-schedule').hidden = true;
    $('m-schedule-actions').hidden = true;
  }
  function showSchedule(m) {
    if (m.status !== 'scheduled' && m.status !== 'cancelled') return;
    fill('m-deliver-at', fmtTime(m.deliver_at) + '  (' + m.deliver_at + ')');
    fill('m-sched-kind', m.kind);
    fill('m-cancelled-at', m.cancelled_at && fmtTime(m.cancelled_at) + '  (' + m.cancelled_at + ')');
    $('m-schedule').hidden = false;
    $('m-schedule-actions').hidden = !(m.status === 'scheduled' && isUuid(m.id));
    if (m.status === 'scheduled') fill('m-stored', 'not yet: due ' + fmtTime(m.deliver_at));
    else fill('m-stored', 'never: cancelled');
  }
  $('m-cancel').addEventListener('click', async () => {
    const id = shownMessage;
    if (!isUuid(id)) return;
    if (!await confirmAction('Cancel scheduled message ' + id + '? It will never be stored.', 'Cancel the message', true, 'Keep it')) return;
    try {
      await api('messages/' + encodeURIComponent(id), { method: 'DELETE' });
      notice('Cancelled: ' + id + ' will never be stored.', 'ok');
    } catch (e) {
      if (e.status === 401) return; // asked for the API token
      notice((e.status === 409 ? 'Not cancelled: ' : 'Cancel failed: ') + e.message, 'bad');
    }
    if (shownMessage === id) await loadMessage(id);
  });

  // ---------- dead letters ----------
  function adminError(e) {
    if (e.status === 401) return 'the admin token was refused (Tokens, top right).';
    if (e.status === 404 && e.body && /^no route/.test(e.body.error || '')) return 'the dead-letter tools are off (no ADMIN_TOKEN).';
    return e.message;
  }
  let deadTotal = 0;
  async function loadDeadLetters() {
    $('dl-disabled').hidden = access.admin;
    $('dl-need-token').hidden = !access.admin || !!token('admin');
    $('dl-tools').hidden = !access.admin || !token('admin');
    if ($('dl-tools').hidden) { $('dl-total').textContent = ''; return; }
    const tbody = $('dl-table').tBodies[0];
    try {
      const r = await api('dead-letters?limit=100', { admin: true });
      if (currentView !== 'dead-letters') return;
      deadTotal = r.total;
      tbody.replaceChildren(...r.dead_letters.map((d) => {
        // No per-row action without a UUID: redrive it with all the others.
        let action = el('span', { class: 'muted', text: '–', title: 'Its id is not a UUID: use Redrive all' });
        if (isUuid(d.id)) {
          action = el('button', { type: 'button', class: 'quiet redrive', text: 'Redrive', 'data-id': d.id });
          action.setAttribute('aria-label', 'Redrive message ' + d.id);
          action.addEventListener('click', () => redriveOne(d.id));
        }
        const preview = d.content == null ? '(not JSON with a content string)' : (d.content.length > 120 ? d.content.slice(0, 120) + '…' : d.content);
        return el('tr', { 'data-id': d.id || '' },
          timeCell(d.dead_lettered_at),
          el('td', { class: 'id' }, idLink(d.id)),
          el('td', { class: 'reason', text: d.reason == null ? '–' : String(d.reason) }),
          el('td', { text: d.attempts == null ? '–' : String(d.attempts) }),
          el('td', { class: 'preview hide-narrow', text: preview }),
          el('td', {}, action));
      }));
      $('dl-total').textContent = r.total + (r.total === 1 ? ' waiting' : ' waiting');
      $('dl-empty').hidden = r.dead_letters.length > 0;
      $('dl-more').hidden = r.total <= r.dead_letters.length;
      $('dl-more').textContent = 'Showing the first ' + r.dead_letters.length + ' of ' + r.total + ' (oldest first).';
      $('dl-redrive-all').disabled = r.total === 0;
      $('dl-purge').disabled = r.total === 0;
    } catch (e) {
      if (e.status === 401) {
        $('dl-tools').hidden = true;
        $('dl-need-token').hidden = false;
      }
      notice('Cannot list dead letters: ' + adminError(e), 'bad');
    }
  }
  async function redriveOne(id) {
    if (!isUuid(id)) return;
    if (!await confirmAction('Send message ' + id + ' back to the queue for another try?', 'Redrive')) return;
    try {
      await api('dead-letters/' + encodeURIComponent(id) + '/redrive', { method: 'POST', admin: true });
      notice('Redriven: ' + id + ' is queued again.', 'ok');
    } catch (e) {
      notice('Redrive failed: ' + adminError(e), 'bad');
    }
    loadDeadLetters();
  }
  $('dl-redrive-all').addEventListener('click', async () => {
    if (!await confirmAction('Send all ' + deadTotal + ' dead letters back to the queue for another try?', 'Redrive all')) return;
    try {
      const r = await api('dead-letters/redrive', { method: 'POST', admin: true });
      notice('Redriven: ' + r.redriven + ' messages queued again.', 'ok');
    } catch (e) {
      notice('Redrive failed: ' + adminError(e), 'bad');
    }
    loadDeadLetters();
  });
  $('dl-purge').addEventListener('click', async () => {
    if (!await confirmAction('Delete all ' + deadTotal + ' dead letters for good? This cannot be undone.', 'Purge all', true)) return;
    try {
      const r = await api('dead-letters?confirm=true', { method: 'DELETE', admin: true });
      notice('Purged: ' + r.purged + ' dead letters deleted.', 'ok');
    } catch (e) {
      notice('Purge failed: ' + adminError(e), 'bad');
    }
    loadDeadLetters();
  });
  $('dl-refresh').addEventListener('click', loadDeadLetters);
  $('dl-enter-token').addEventListener('click', () => askForToken('The dead-letter tools need the admin token (ADMIN_TOKEN).'));

  // ---------- batches ----------
  async function loadBatches(id) {
    if (batchesSupported === null) {
      try {
        const doc = await api('openapi.json');
        batchesSupported = !!(doc.paths && doc.paths['/batches/{id}']);
      } catch (_) {
        batchesSupported = false;
      }
    }
    $('b-unavailable').hidden = batchesSupported;
    $('b-tools').hidden = !batchesSupported;
    if (!batchesSupported || !id) return;
    $('b-id').value = id;
    try {
      const b = await api('batches/' + encodeURIComponent(id));
      const total = Math.max(1, Number(b.total) || 0);
      badge($('b-status'), b.status || 'unknown');
      $('b-counts').textContent = fmtCount(b.stored) + ' stored, ' + fmtCount(b.dead_lettered) + ' dead-lettered, ' +
        fmtCount(b.pending) + ' pending of ' + fmtCount(b.total);
      const bar = $('b-bar');
      bar.querySelector('.stored').style.width = (100 * (b.stored || 0) / total) + '%';
      bar.querySelector('.dead').style.width = (100 * (b.dead_lettered || 0) / total) + '%';
      bar.setAttribute('aria-label', $('b-counts').textContent);
      $('b-result').hidden = false;
    } catch (e) {
      $('b-result').hidden = true;
      if (e.status !== 401) notice('Cannot read batch ' + id + ': ' + e.message, 'bad');
    }
  }
  $('b-lookup').addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = '#/batches/' + encodeURIComponent($('b-id').value.trim());
  });

  // ---------- start ----------
  (async () => {
    try {
      const r = await fetch('dashboard/api/access', { cache: 'no-store' });
      access = await r.json();
    } catch (e) {
      notice('The producer does not answer: ' + e.message, 'bad');
      return;
    }
    route(false);
  })();
})();
