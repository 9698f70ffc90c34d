/* trajdocs search: the scan over the step shards (see trajdocs/search.py for their layout).
   Runs as a Web Worker (shards fetched, or loaded with importScripts); on a page opened from disk, where
   Chromium refuses workers and fetch() from file URLs, search.js loads this file as a plain
   script and drives the same engine on the page, shards loaded with <script> elements. */
(function (root) {
  "use strict";

  var SNIPPET = 80;       // characters of context each side of a match
  var MATCH_CHARS = 200;  // characters of a match shown
  var MAX_HITS = 500;     // snippets sent per search (the counts cover every response)
  var BATCH = 8;          // shards loaded at once

  function makeRegex(q) {
    var source = q.regex ? q.pattern : q.pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return new RegExp(source, "g" + (q.caseSensitive ? "" : "i") + "m");
  }

  /* The first match in `text` that passes `ok(start, end)`, or null; at most `limit` matches tried. */
  function firstMatch(re, text, ok) {
    re.lastIndex = 0;
    var m, tried = 0;
    while ((m = re.exec(text)) !== null) {
      var start = m.index, end = start + m[0].length;
      if (m[0].length === 0) re.lastIndex++;
      if (!ok || ok(start, end)) return [start, end];
      if (++tried > 100000) return null;
    }
    return null;
  }

  /* Whether a scored token of at least `level` overlaps [start, end) (a token holding `start`
     for an empty match). `scores`: [gap, length, level, ...], gaps from the previous token's end. */
  function scoredAt(scores, level, start, end) {
    var pos = 0;
    for (var i = 0; i < scores.length; i += 3) {
      var s = pos + scores[i], e = s + scores[i + 1];
      pos = e;
      if (s >= Math.max(end, start + 1)) return false;
      if (e > start && scores[i + 2] >= level) return true;
    }
    return false;
  }

  function snippet(text, start, end) {
    var from = Math.max(0, start - SNIPPET), to = Math.min(text.length, end + SNIPPET);
    return {
      before: (from > 0 ? "…" : "") + text.slice(from, start),
      match: text.slice(start, Math.min(end, start + MATCH_CHARS)) + (end - start > MATCH_CHARS ? "…" : ""),
      after: text.slice(end, to) + (to < text.length ? "…" : ""),
    };
  }

  function passes(q, row) {
    var reward = row[3];
    if (q.rewardMin !== null && (reward === null || reward < q.rewardMin)) return false;
    if (q.rewardMax !== null && (reward === null || reward > q.rewardMax)) return false;
    if (q.correct === "correct" && row[4] !== true) return false;
    if (q.correct === "incorrect" && row[4] !== false) return false;
    if (q.correct === "unknown" && row[4] !== null) return false;
    return true;
  }

  /* Scan one shard: [matching responses, their snippets]. */
  function scanShard(q, re, shard, meta, hits) {
    var matched = 0;
    var level = q.minScore === null ? null : Math.round(q.minScore * 100);
    var promptHit = {};
    var rows = shard.t;
    for (var i = 0; i < rows.length; i++) {
      var row = rows[i];
      if (!passes(q, row)) continue;
      var found = null, where = "r", text = row[5];
      if (q.where !== "p") {
        found = firstMatch(re, text, level === null ? null : function (s, e) { return scoredAt(row[6], level, s, e); });
      }
      if (!found && q.where !== "r" && level === null && row[2] >= 0) {
        if (!(row[2] in promptHit)) promptHit[row[2]] = firstMatch(re, shard.p[row[2]], null);
        found = promptHit[row[2]];
        where = "p";
        text = shard.p[row[2]];
      }
      if (!found) continue;
      matched++;
      if (hits.length < MAX_HITS) {
        var cut = snippet(text, found[0], found[1]);
        hits.push({ e: meta.e, step: meta.step, index: row[0], page: row[1], reward: row[3], correct: row[4],
                    where: where, before: cut.before, match: cut.match, after: cut.after });
      }
    }
    return matched;
  }

  function createEngine(load) {
    var cache = new Map();
    var engine = { current: null };

    function shards(urls) {
      var missing = urls.filter(function (u) { return !cache.has(u); });
      if (!missing.length) return Promise.resolve();
      return load(missing).then(function (loaded) {
        missing.forEach(function (u, i) { cache.set(u, loaded[i]); });
      });
    }

    /* lets a new query's message in between batches; a message port, not setTimeout (which
       waits at least 4 ms once nested) */
    function pause() {
      return new Promise(function (resolve) {
        if (typeof MessageChannel === "undefined") { setTimeout(resolve, 0); return; }
        var channel = new MessageChannel();
        channel.port1.onmessage = function () { channel.port1.close(); resolve(); };
        channel.port2.postMessage(0);
      });
    }

    /* q: {id, pattern, regex, caseSensitive, where, minScore, rewardMin, rewardMax, correct,
       shards: [{e, step, url}]}; emit(message) gets progress and a last "done" message. */
    engine.run = function (q, emit) {
      engine.current = q.id;
      var re;
      try { re = makeRegex(q); } catch (err) {
        emit({ type: "error", id: q.id, message: String(err.message || err) });
        return Promise.resolve();
      }
      var list = q.shards, done = 0, failed = 0, total = list.length, sent = 0;
      var hits = [], counts = [];
      var last = Date.now();
      function flush(final) {
        emit({ type: final ? "done" : "progress", id: q.id, done: done, total: total, failed: failed,
               counts: counts, hits: hits.slice(sent) });
        sent = hits.length;
        counts = [];
        last = Date.now();
      }
      function next(start) {
        if (engine.current !== q.id) return Promise.resolve();
        if (start >= list.length) { flush(true); return Promise.resolve(); }
        var size = start === 0 ? 2 : BATCH;  // a small first batch: the first results sooner
        var batch = list.slice(start, start + size);
        return shards(batch.map(function (s) { return s.url; })).then(function () {
          if (engine.current !== q.id) return;
          batch.forEach(function (meta) {
            var shard = cache.get(meta.url);
            done++;
            if (!shard) { failed++; return; }
            counts.push([meta.e, meta.step, scanShard(q, re, shard, meta, hits), shard.t.length]);
          });
          if (Date.now() - last > 60 || start === 0) flush(false);
          return pause().then(function () { return next(start + size); });
        });
      }
      return next(0);
    };
    engine.cancel = function () { engine.current = null; };
    return engine;
  }

  root.tdSearchEngine = createEngine;

  var inWorker = typeof WorkerGlobalScope !== "undefined" && root instanceof WorkerGlobalScope;
  if (!inWorker) return;
  var received = [];
  root.tdShard = function (data) { received.push(data); };
  function importAll(urls) {
    received = [];
    try {
      importScripts.apply(null, urls);
      return received.slice();
    } catch (err) {  // one failed: load them one by one, a missing one is null
      return urls.map(function (url) {
        received = [];
        try { importScripts(url); } catch (e) { return null; }
        return received[0] || null;
      });
    }
  }
  /* over http(s): the batch fetched in parallel and read as JSON (the shard is `tdShard(<JSON>);`);
     a shard that cannot be fetched is tried once more with importScripts */
  function fetchAll(urls) {
    if (typeof fetch !== "function") return Promise.resolve(importAll(urls));
    return Promise.all(urls.map(function (url) {
      return fetch(url).then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      }).then(function (text) {
        return JSON.parse(text.slice(text.indexOf("(") + 1, text.lastIndexOf(")")));
      }).catch(function () { return importAll([url])[0]; });
    }));
  }
  var engine = createEngine(fetchAll);
  root.onmessage = function (event) {
    var q = event.data;
    if (q.cancel) { engine.cancel(); return; }
    engine.run(q, function (message) { root.postMessage(message); });
  };
})(self);
