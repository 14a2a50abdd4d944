/* vlmprobe sample browser (written by `vlmprobe browse`; see vlmprobe/browse/__init__.py).
   Data arrive as script files (data/*.js call VB.index / VB.dataset / VB.run), which browsers
   load from file:// without a server. The state lives in the URL fragment, e.g.
   #ds=test&run=vlm/test/generate&cls=3&wrong=1. Only one page of rows is in the DOM. */
(function () {
  'use strict';
  var t0 = performance.now();
  var PAGE = 50;
  var STATUS = ['ok', 'unmatched', 'skipped', 'api_error', 'absent'];
  var VB = window.VB = window.VB || {};
  var INDEX = null, D = null, R = [], pending = 0, S = {}, hits = null, qcache = {};

  VB.index = function (meta) { INDEX = meta; };
  VB.dataset = function (meta) { D = meta; };
  VB.run = function (j, payload) { R[j] = payload; };
  VB.timing = {};

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) { return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]; });
  }
  function decode(s, T) {
    var bin = atob(s), n = bin.length, u = new Uint8Array(n);
    for (var i = 0; i < n; i++) u[i] = bin.charCodeAt(i);
    return new T(u.buffer);
  }
  function fail(msg) { var e = $('error'); e.hidden = false; e.textContent = msg; document.body.dataset.ready = 'error'; }
  function load(src, done) {
    var s = document.createElement('script');
    s.src = src;
    s.onload = done;
    s.onerror = function () { fail('could not load ' + src + ' (written by vlmprobe browse next to this page)'); };
    document.head.appendChild(s);
  }

  /* ------------------------------------------------------------ state <-> fragment */
  var KEYS = ['ds', 'cls', 'run', 'pred', 'wrong', 'a', 'b', 'allwrong', 'status', 'q', 'page'];
  function readHash() {
    var st = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf('='), k = decodeURIComponent(i < 0 ? kv : kv.slice(0, i));
      st[k] = i < 0 ? '1' : decodeURIComponent(kv.slice(i + 1).replace(/\+/g, ' '));
    });
    return st;
  }
  function writeHash() {
    var parts = [];
    KEYS.forEach(function (k) {
      var v = S[k];
      if (v === undefined || v === null || v === '' || v === false || (k === 'page' && v === 0)) return;
      parts.push(k + '=' + encodeURIComponent(v === true ? 1 : v));
    });
    history.replaceState(null, '', '#' + parts.join('&'));
  }
  function runIndex(id) {
    if (id === undefined || id === null || id === '') return -1;
    for (var j = 0; j < INDEX_DS.runs.length; j++) if (INDEX_DS.runs[j].id === id) return j;
    var n = parseInt(id, 10);
    return isNaN(n) || n < 0 || n >= R.length ? -1 : n;
  }
  function intOr(v, d) { var n = parseInt(v, 10); return isNaN(n) ? d : n; }

  /* ------------------------------------------------------------ start */
  var INDEX_DS = null;
  function start() {
    if (!INDEX) return fail('data/index.js did not load');
    var h = readHash();
    INDEX_DS = INDEX.datasets[0];
    INDEX.datasets.forEach(function (d) { if (d.name === h.ds) INDEX_DS = d; });
    $('title').textContent = INDEX.title + (INDEX.datasets.length > 1 ? ' / ' + INDEX_DS.name : '');
    if (INDEX.report) { var a = $('report-link'); a.href = INDEX.report; a.hidden = false; }
    load('data/' + INDEX_DS.file, function () {
      pending = INDEX_DS.runs.length;
      if (!pending) return ready(h);
      INDEX_DS.runs.forEach(function (r) { load('data/' + r.file, function () { if (--pending === 0) ready(h); }); });
    });
  }

  function ready(h) {
    var t1 = performance.now();
    var T = D.int32 ? Int32Array : Int16Array;
    D.labels = decode(D.label, T);
    R.forEach(function (r, j) {
      r.meta = INDEX_DS.runs[j];
      r.p = decode(r.pred, T);
      r.s = decode(r.status, Uint8Array);
      r.a = decode(r.answer, Int32Array);
      if (r.top) { r.t = decode(r.top, T); r.ts = decode(r.tops, Float32Array); }
      r.lower = null;
    });
    VB.timing.decode_ms = performance.now() - t1;
    buildControls();
    setState(h);
    VB.timing.open_ms = performance.now() - t0;
    $('timing').textContent = 'opened in ' + Math.round(VB.timing.open_ms) + ' ms (data ' +
      Math.round(t1 - t0) + ' ms); filtered in ' + VB.timing.filter_ms.toFixed(1) + ' ms';
    window.addEventListener('hashchange', function () {
      var st = readHash();
      if ((st.ds || INDEX.datasets[0].name) !== INDEX_DS.name) return location.reload();
      setState(st);
    });
    document.body.dataset.ready = '1';
  }

  function option(value, text) { return '<option value="' + esc(value) + '">' + esc(text) + '</option>'; }
  function buildControls() {
    $('f-ds').innerHTML = INDEX.datasets.map(function (d) {
      return option(d.name, d.name + ' (' + d.n + ' samples, ' + d.runs.length + ' runs)');
    }).join('');
    var cls = option('', 'any') + D.classnames.map(function (c, i) { return option(i, i + ': ' + c); }).join('');
    $('f-cls').innerHTML = cls;
    $('f-pred').innerHTML = cls;
    var runs = option('', '–') + INDEX_DS.runs.map(function (r) { return option(r.id, r.label); }).join('');
    ['f-run', 'f-a', 'f-b'].forEach(function (id) { $(id).innerHTML = runs; });
    var head = '<tr><th>#</th><th>image</th><th>sample</th><th>true class</th>';
    INDEX_DS.runs.forEach(function (r, j) {
      head += '<th id="h' + j + '" title="' + esc(r.id) + '">' + esc(r.label) + '</th>';
    });
    $('head').innerHTML = head + '</tr>';
    $('f-ds').onchange = function () { location.hash = 'ds=' + encodeURIComponent(this.value); location.reload(); };
    var map = {'f-cls': 'cls', 'f-run': 'run', 'f-pred': 'pred', 'f-a': 'a', 'f-b': 'b', 'f-status': 'status'};
    Object.keys(map).forEach(function (id) {
      $(id).onchange = function () { S[map[id]] = this.value; S.page = 0; apply(); };
    });
    $('f-wrong').onchange = function () { S.wrong = this.checked; S.page = 0; apply(); };
    $('f-allwrong').onchange = function () { S.allwrong = this.checked; S.page = 0; apply(); };
    var timer = null;
    $('f-q').oninput = function () {
      var v = this.value;
      clearTimeout(timer);
      timer = setTimeout(function () { S.q = v; S.page = 0; apply(); }, 150);
    };
    $('f-reset').onclick = function () { setState({}); };
    $('prev').onclick = function () { if (S.page > 0) { S.page--; apply(true); } };
    $('next').onclick = function () { if ((S.page + 1) * PAGE < hits.length) { S.page++; apply(true); } };
  }

  function setState(st) {
    S = {ds: INDEX_DS.name, cls: st.cls || '', run: st.run || '', pred: st.pred || '', wrong: st.wrong === '1',
         a: st.a || '', b: st.b || '', allwrong: st.allwrong === '1', status: st.status || '', q: st.q || '',
         page: intOr(st.page, 0)};
    apply(false, true);
  }

  function syncControls() {
    $('f-ds').value = INDEX_DS.name;
    $('f-cls').value = S.cls; $('f-run').value = S.run; $('f-pred').value = S.pred;
    $('f-a').value = S.a; $('f-b').value = S.b; $('f-status').value = S.status;
    $('f-wrong').checked = !!S.wrong; $('f-allwrong').checked = !!S.allwrong;
    if ($('f-q').value !== S.q) $('f-q').value = S.q || '';
    INDEX_DS.runs.forEach(function (r, j) {
      $('h' + j).className = r.id === S.a ? 'a' : r.id === S.b ? 'b' : '';
    });
  }

  /* ------------------------------------------------------------ filtering */
  function right(r, i) { return r.s[i] === 0 && r.p[i] === D.labels[i]; }
  function wrong(r, i) { return (r.s[i] === 0 && r.p[i] !== D.labels[i]) || r.s[i] === 1; }
  function answerHits(r, q) {  /* Uint8Array over the run's distinct answers: contains q */
    var key = r.meta.file + '\u0000' + q;
    if (qcache[key]) return qcache[key];
    if (!r.lower) r.lower = r.strings.map(function (s) { return s.toLowerCase(); });
    var m = new Uint8Array(r.lower.length);
    for (var k = 0; k < m.length; k++) m[k] = r.lower[k].indexOf(q) >= 0 ? 1 : 0;
    return (qcache[key] = m);
  }

  function filter() {
    var n = D.n, L = D.labels, out = new Int32Array(n), m = 0;
    var cls = S.cls === '' ? -1 : intOr(S.cls, -1);
    var one = R[runIndex(S.run)] || null;
    var pred = S.pred === '' ? -1 : intOr(S.pred, -1);
    var A = R[runIndex(S.a)] || null, B = R[runIndex(S.b)] || null;
    var code = STATUS.indexOf(S.status);
    var statusRuns = code > 0 ? (one ? [one] : R) : [];
    var q = (S.q || '').trim().toLowerCase();
    var qruns = [], qhits = [];
    if (q) {
      (one ? [one] : R).forEach(function (r) { if (r.strings.length) { qruns.push(r); qhits.push(answerHits(r, q)); } });
    }
    outer:
    for (var i = 0; i < n; i++) {
      if (cls >= 0 && L[i] !== cls) continue;
      if (one) {
        if (pred >= 0 && !(one.s[i] === 0 && one.p[i] === pred)) continue;
        if (S.wrong && !wrong(one, i)) continue;
      }
      if (A && !wrong(A, i)) continue;
      if (B && !right(B, i)) continue;
      if (S.allwrong) {
        var seen = 0;
        for (var j = 0; j < R.length; j++) {
          if (R[j].s[i] === 4) continue;
          if (!wrong(R[j], i)) continue outer;
          seen++;
        }
        if (!seen) continue;
      }
      if (code > 0) {
        var has = false;
        for (var k = 0; k < statusRuns.length; k++) if (statusRuns[k].s[i] === code) { has = true; break; }
        if (!has) continue;
      }
      if (q) {
        var found = false;
        for (var x = 0; x < qruns.length; x++) {
          var ai = qruns[x].a[i];
          if (ai >= 0 && qhits[x][ai]) { found = true; break; }
        }
        if (!found) continue;
      }
      out[m++] = i;
    }
    return out.subarray(0, m);
  }

  function apply(pageOnly, initial) {
    var t = performance.now();
    if (!pageOnly) hits = filter();
    VB.timing.filter_ms = performance.now() - t;
    var pages = Math.max(1, Math.ceil(hits.length / PAGE));
    if (S.page >= pages) S.page = pages - 1;
    if (S.page < 0) S.page = 0;
    syncControls();
    writeHash();
    render();
    VB.timing.render_ms = performance.now() - t - VB.timing.filter_ms;
    if (!initial) {
      $('timing').textContent = 'filtered in ' + VB.timing.filter_ms.toFixed(1) + ' ms, shown in ' +
        VB.timing.render_ms.toFixed(1) + ' ms';
    }
  }

  /* ------------------------------------------------------------ rendering */
  function highlight(text, q) {
    if (!q) return esc(text);
    var i = text.toLowerCase().indexOf(q);
    if (i < 0) return esc(text);
    return esc(text.slice(0, i)) + '<mark>' + esc(text.slice(i, i + q.length)) + '</mark>' + esc(text.slice(i + q.length));
  }
  function cell(r, i, q) {
    var st = r.s[i], L = D.labels[i], names = D.classnames, html = '';
    if (st === 4) return '<td class="run na">not in this run</td>';
    if (st === 0) {
      var ok = r.p[i] === L;
      html += '<span class="pred ' + (ok ? 'ok' : 'bad') + '">' + (ok ? '✓ ' : '✗ ') + esc(names[r.p[i]] || r.p[i]) + '</span>';
    } else {
      html += '<span class="pred ' + (st === 1 ? 'bad' : 'na') + '">' + (st === 1 ? '✗ –' : '–') + '</span>';
    }
    if (st > 0) html += '<span class="st ' + STATUS[st] + '">' + STATUS[st] + '</span>';
    var ai = r.a[i];
    if (ai >= 0) html += '<div class="ans">' + highlight(r.strings[ai], q) + '</div>';
    if (r.t && st < 2) {
      var li = '';
      for (var k = 0; k < 5; k++) {
        var c = r.t[i * 5 + k];
        if (c < 0) break;
        var v = r.ts[i * 5 + k];
        li += '<li' + (c === L ? ' class="t"' : '') + '>' + esc(names[c] || c) + (isNaN(v) ? '' : ' <span class="na">' + v.toFixed(2) + '</span>') + '</li>';
      }
      if (li) html += '<ol class="top">' + li + '</ol>';
    }
    return '<td class="run">' + html + '</td>';
  }
  function render() {
    var from = S.page * PAGE, to = Math.min(hits.length, from + PAGE), rows = [];
    var q = (S.q || '').trim().toLowerCase();
    for (var x = from; x < to; x++) {
      var i = hits[x], L = D.labels[i], th = D.thumbs[i];
      var img = th ? '<a href="' + esc(D.images[i]) + '"><img loading="lazy" alt="' + esc(D.ids[i]) + '" src="thumbs/' + th + '.jpg"></a>' : '<span class="na">no image</span>';
      var tr = '<tr data-id="' + esc(D.ids[i]) + '"><td class="na">' + (i + 1) + '</td><td class="img">' + img + '</td><td>' +
        esc(D.ids[i]) + '</td><td>' + (L >= 0 ? esc(D.classnames[L] || L) : '<span class="na">unlabeled</span>') + '</td>';
      for (var j = 0; j < R.length; j++) tr += cell(R[j], i, q);
      rows.push(tr + '</tr>');
    }
    $('rows').innerHTML = rows.join('');
    $('count').textContent = hits.length ? (from + 1) + '–' + to + ' of ' + hits.length + ' matching (' + D.n + ' samples)'
      : '0 matching (' + D.n + ' samples)';
    $('count').dataset.matching = hits.length;
    $('prev').disabled = S.page === 0;
    $('next').disabled = to >= hits.length;
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start); else start();
})();
