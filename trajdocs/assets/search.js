/* trajdocs search across the run: the search box of the overview and experiment pages (form,
   URL state, chart over steps, snippets) and, on a step page opened from a result, the
   highlight of the match. Every text from a file is set with textContent, never as markup. */
(function () {
  "use strict";

  var SCRIPT = document.currentScript && document.currentScript.src;
  var WORKER = SCRIPT ? SCRIPT.replace(/search\.js([?#].*)?$/, "search-worker.js") : null;
  var PARAMS = ["td-q", "td-re", "td-case", "td-in", "td-exp", "td-from", "td-to", "td-rmin", "td-rmax", "td-ok", "td-min"];
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    return node;
  }

  function num(value) {
    if (value === null || value === undefined || String(value).trim() === "") return null;
    var x = Number(value);
    return isFinite(x) ? x : null;
  }

  function fmt(x) {
    if (x === null || x === undefined) return "—";
    return Math.abs(x) >= 1000 || x === Math.round(x) ? String(Math.round(x * 1000) / 1000) : x.toPrecision(4).replace(/\.?0+$/, "");
  }

  /* --- the engine: a worker over http(s), the page itself from disk ----------------------- */
  var engine = null;
  var searchId = 0;  // across pages (instant navigation keeps one engine)

  function scriptLoader(urls) {
    return Promise.all(urls.map(function (url) {
      return new Promise(function (resolve) {
        var tag = document.createElement("script");
        tag.src = url;
        tag.onload = function () { resolve(loadedShards[tag.src] || null); delete loadedShards[tag.src]; tag.remove(); };
        tag.onerror = function () { resolve(null); tag.remove(); };
        document.head.appendChild(tag);
      });
    }));
  }
  var loadedShards = {};

  function getEngine(onMessage) {
    if (engine) { engine.onMessage = onMessage; return Promise.resolve(engine); }
    if (location.protocol !== "file:" && WORKER && window.Worker) {
      try {
        var worker = new Worker(WORKER);
        engine = {
          onMessage: onMessage,
          run: function (q) { worker.postMessage(q); },
          cancel: function () { worker.postMessage({ cancel: true }); },
        };
        worker.onmessage = function (event) { engine.onMessage(event.data); };
        return Promise.resolve(engine);
      } catch (err) { /* fall through to the page */ }
    }
    return new Promise(function (resolve) {
      window.tdShard = function (data) {
        var current = document.currentScript;
        if (current) loadedShards[current.src] = data;
      };
      var start = function () {
        var inner = window.tdSearchEngine(scriptLoader);
        engine = {
          onMessage: onMessage,
          run: function (q) { inner.run(q, function (m) { engine.onMessage(m); }); },
          cancel: function () { inner.cancel(); },
        };
        resolve(engine);
      };
      if (window.tdSearchEngine) { start(); return; }
      var tag = document.createElement("script");
      tag.src = WORKER;
      tag.onload = start;
      document.head.appendChild(tag);
    });
  }

  /* --- the search box ---------------------------------------------------------------------- */
  function field(label, input) {
    var wrap = el("label", { class: "td-search-field" });
    wrap.appendChild(el("span", {}, label));
    wrap.appendChild(input);
    return wrap;
  }

  /* The run's search index (experiments, steps, their pages and shards), one script for every
     search box: loaded once per page load with a <script> element (which works from disk too),
     its links resolved against its own URL. */
  var indexes = {};
  var loadedIndexes = {};
  window.tdSearchIndex = function (data) {
    var current = document.currentScript;
    if (current) loadedIndexes[current.src] = data;
  };
  function loadIndex(url) {
    if (!indexes[url]) {
      indexes[url] = new Promise(function (resolve) {
        var tag = document.createElement("script");
        tag.src = url;
        tag.onload = function () { resolve(loadedIndexes[tag.src] || null); tag.remove(); };
        tag.onerror = function () { resolve(null); tag.remove(); };
        document.head.appendChild(tag);
      }).then(function (index) {
        if (!index) delete indexes[url];  // tried again by the next box
        return index && index.experiments.map(function (exp) {
          return { name: exp.name, shards: new URL(exp.shards, url).href,
                   steps: exp.steps.map(function (s) { return [s[0], s[1], s[2].map(function (u) { return new URL(u, url).href; }), s[3]]; }) };
        });
      });
    }
    return indexes[url];
  }

  var started = typeof WeakSet === "function" ? new WeakSet() : null;
  function setupBox(box) {
    if (box.querySelector("form.td-search-form")) return;  // (a page restored by instant navigation: its attributes, not its form)
    if (started) { if (started.has(box)) return; started.add(box); }
    var data = JSON.parse(box.getAttribute("data-search"));
    loadIndex(new URL(data.index, location.href).href).then(function (exps) {
      if (exps) buildBox(box, data, exps);
      else box.appendChild(el("p", { class: "td-note td-search-status" }, "The search index of this site could not be loaded."));
    });
  }

  function buildBox(box, data, exps) {
    exps = exps.map(function (exp) {  // the index is shared by every page's box: this box's own copy
      return { name: exp.name, shards: exp.shards, steps: exp.steps,
               current: data.here === "overview" || data.current.indexOf(exp.name) >= 0 };
    });
    var form = el("form", { class: "td-search-form", role: "search" });
    form.addEventListener("submit", function (e) { e.preventDefault(); schedule(0); });
    var query = el("input", { type: "search", class: "td-search-input", placeholder: "Search prompts and responses", "aria-label": "Search text", autocomplete: "off", spellcheck: "false" });
    var regex = el("input", { type: "checkbox", class: "td-search-regex" });
    var matchCase = el("input", { type: "checkbox", class: "td-search-case" });
    var where = el("select", { class: "td-search-in" });
    [["r", "responses"], ["p", "prompts"], ["b", "prompts and responses"]].forEach(function (o) {
      where.appendChild(el("option", { value: o[0] }, o[1]));
    });
    var row1 = el("div", { class: "td-search-row" });
    row1.appendChild(query);
    row1.appendChild(field("regular expression", regex));
    row1.appendChild(field("match case", matchCase));
    row1.appendChild(field("in", where));
    form.appendChild(row1);

    var row2 = el("div", { class: "td-search-row td-search-filters" });
    var expBoxes = exps.map(function (exp, i) {
      var input = el("input", { type: "checkbox", class: "td-search-exp", value: exp.name });
      input.checked = exp.current;
      if (exps.length > 1) {
        var label = field(exp.name, input);
        label.querySelector("span").style.borderBottom = "3px solid " + COLOURS[i % COLOURS.length];
        row2.appendChild(label);
      }
      return input;
    });
    var from = el("input", { type: "number", class: "td-search-from", step: "1" });
    var to = el("input", { type: "number", class: "td-search-to", step: "1" });
    var rmin = el("input", { type: "number", class: "td-search-rmin", step: "any" });
    var rmax = el("input", { type: "number", class: "td-search-rmax", step: "any" });
    var ok = el("select", { class: "td-search-ok" });
    [["", "any"], ["correct", "correct"], ["incorrect", "incorrect"], ["unknown", "not stated"]].forEach(function (o) {
      ok.appendChild(el("option", { value: o[0] }, o[1]));
    });
    var minScore = el("input", { type: "number", class: "td-search-min", step: "0.01", min: "0" });
    row2.appendChild(field("steps from", from));
    row2.appendChild(field("to", to));
    row2.appendChild(field("reward from", rmin));
    row2.appendChild(field("to", rmax));
    row2.appendChild(field("correctness", ok));
    row2.appendChild(field("min. entropy score of the matched token", minScore));
    form.appendChild(row2);
    box.appendChild(form);
    var status = el("div", { class: "td-search-status", role: "status", "aria-live": "polite" });
    var bar = el("progress", { class: "td-search-progress", max: "1", value: "0" });
    bar.hidden = true;
    var chart = el("div", { class: "td-search-chart" });
    var list = el("ol", { class: "td-search-results" });
    var more = el("p", { class: "td-note td-search-more" });
    box.appendChild(bar);
    box.appendChild(status);
    box.appendChild(chart);
    box.appendChild(list);
    box.appendChild(more);

    var inputs = { "td-q": query, "td-re": regex, "td-case": matchCase, "td-in": where, "td-from": from, "td-to": to,
                   "td-rmin": rmin, "td-rmax": rmax, "td-ok": ok, "td-min": minScore };
    function restore() {
      var params = new URLSearchParams(location.search);
      Object.keys(inputs).forEach(function (k) {
        var input = inputs[k], value = params.get(k);
        if (input.type === "checkbox") input.checked = value === "1";
        else if (value !== null) input.value = value;
      });
      var named = params.getAll("td-exp");
      if (named.length) expBoxes.forEach(function (b) { b.checked = named.indexOf("*") >= 0 || named.indexOf(b.value) >= 0; });
    }
    function writeUrl() {
      var params = new URLSearchParams(location.search);
      PARAMS.forEach(function (k) { params.delete(k); });
      if (query.value) {
        Object.keys(inputs).forEach(function (k) {
          var input = inputs[k];
          if (input.type === "checkbox") { if (input.checked) params.set(k, "1"); }
          else if (input.value !== "" && !(k === "td-in" && input.value === "r")) params.set(k, input.value);
        });
        var chosen = expBoxes.filter(function (b) { return b.checked; });
        if (exps.length > 1 && chosen.length !== exps.length) chosen.forEach(function (b) { params.append("td-exp", b.value); });
      }
      var text = params.toString();
      history.replaceState(history.state, "", location.pathname + (text ? "?" + text : "") + location.hash);
    }
    function linkParams(where) {
      var params = new URLSearchParams();
      params.set("td-q", query.value);
      if (regex.checked) params.set("td-re", "1");
      if (matchCase.checked) params.set("td-case", "1");
      params.set("td-in", where);
      if (num(minScore.value) !== null) params.set("td-min", minScore.value);
      return params.toString();
    }

    var state = null, timer = null;
    function schedule(delay) {
      clearTimeout(timer);
      timer = setTimeout(start, delay);
      box.setAttribute("data-state", "pending");
    }
    function start() {
      timer = null;
      writeUrl();
      searchId++;
      list.textContent = "";
      chart.textContent = "";
      more.textContent = "";
      var pattern = query.value;
      if (!pattern) {
        box.setAttribute("data-state", "done");
        status.textContent = "";
        bar.hidden = true;
        if (engine) engine.cancel();
        return;
      }
      var lo = num(from.value), hi = num(to.value);
      var shards = [];
      exps.forEach(function (exp, e) {
        if (!expBoxes[e].checked) return;
        exp.steps.forEach(function (s) {
          if ((lo === null || s[0] >= lo) && (hi === null || s[0] <= hi)) {
            shards.push({ e: e, step: s[0], url: new URL(exp.shards + "step-" + s[0] + ".js?v=" + s[3], location.href).href });
          }
        });
      });
      shards.sort(function (a, b) { return a.step - b.step || a.e - b.e; });
      var min = num(minScore.value);
      state = { id: searchId, counts: {}, matched: 0, responses: 0, hits: 0, where: where.value, linkQuery: {} };
      var q = { id: searchId, pattern: pattern, regex: regex.checked, caseSensitive: matchCase.checked,
                where: where.value, minScore: min === null ? null : Math.ceil(min * 100 - 1e-9) / 100,
                rewardMin: num(rmin.value), rewardMax: num(rmax.value), correct: ok.value, shards: shards };
      status.textContent = "Searching…";
      bar.hidden = false;
      bar.value = 0;
      box.setAttribute("data-state", "running");
      getEngine(receive).then(function (eng) { if (q.id === searchId) eng.run(q); });
    }
    function receive(m) {
      if (!state || m.id !== state.id) return;  // an older search's messages
      if (m.type === "error") {
        status.textContent = "Not a valid regular expression: " + m.message;
        bar.hidden = true;
        if (timer === null) box.setAttribute("data-state", "error");
        return;
      }
      m.counts.forEach(function (c) {
        state.counts[c[0] + ":" + c[1]] = c;
        state.matched += c[2];
        state.responses += c[3];
      });
      m.hits.forEach(addHit);
      bar.value = m.total ? m.done / m.total : 1;
      var text = state.matched.toLocaleString() + " matching responses of " + state.responses.toLocaleString() +
        " in " + m.done + " of " + m.total + " steps" + (m.type === "done" ? "" : "…");
      if (m.failed) text += " · " + m.failed + " step shards could not be loaded";
      status.textContent = text;
      drawChart();
      if (m.type === "done") {
        bar.hidden = true;
        if (timer === null) box.setAttribute("data-state", "done");
        if (state.hits < state.matched) more.textContent = "Snippets of the first " + state.hits + " matching responses are listed.";
      }
    }
    function stepUrl(e, step, page) {
      var s = exps[e].steps.find(function (x) { return x[0] === step; });
      return s ? s[2][Math.min(page, s[2].length) - 1] : "";
    }
    function addHit(hit) {
      state.hits++;
      var href = stepUrl(hit.e, hit.step, hit.page) + "?" + linkParams(hit.where) + "#traj-" + hit.index;
      var item = el("li", { class: "td-search-hit" });
      var head = el("a", { href: href, class: "td-search-link" });
      var parts = [];
      if (exps.length > 1) parts.push(exps[hit.e].name);
      parts.push("step " + hit.step, "trajectory " + hit.index, "reward " + fmt(hit.reward));
      if (hit.correct !== null) parts.push(hit.correct ? "correct" : "incorrect");
      if (hit.where === "p") parts.push("in the prompt");
      head.textContent = parts.join(" · ");
      item.appendChild(head);
      var pre = el("pre", { class: "td-search-snippet" });
      pre.appendChild(document.createTextNode(hit.before));
      pre.appendChild(el("mark", {}, hit.match));
      pre.appendChild(document.createTextNode(hit.after));
      item.appendChild(pre);
      list.appendChild(item);
    }
    function drawChart() {
      var keys = Object.keys(state.counts);
      if (!keys.length) return;
      var rows = keys.map(function (k) { return state.counts[k]; });
      var steps = rows.map(function (c) { return c[1]; });
      var x0 = Math.min.apply(null, steps), x1 = Math.max.apply(null, steps);
      var top = Math.max.apply(null, rows.map(function (c) { return c[3] ? c[2] / c[3] : 0; }));
      top = top > 0 ? top : 1;
      var W = 720, H = 180, L = 44, R = 10, T = 10, B = 26;
      var x = function (s) { return x1 === x0 ? L + (W - L - R) / 2 : L + (s - x0) / (x1 - x0) * (W - L - R); };
      var y = function (v) { return T + (1 - v / top) * (H - T - B); };
      var chartSvg = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "td-search-svg", role: "img" });
      var title = svg("title");
      title.textContent = "Share of each step's responses that match, per experiment";
      chartSvg.appendChild(title);
      [[0, "0%"], [top, Math.round(top * 1000) / 10 + "%"]].forEach(function (t) {
        var label = svg("text", { x: L - 4, y: y(t[0]) + 4, "text-anchor": "end", class: "td-axis" });
        label.textContent = t[1];
        chartSvg.appendChild(label);
        chartSvg.appendChild(svg("line", { x1: L, x2: W - R, y1: y(t[0]), y2: y(t[0]), class: "td-grid" }));
      });
      [x0, x1].forEach(function (s, i) {
        var label = svg("text", { x: x(s), y: H - 8, "text-anchor": i ? "end" : "start", class: "td-axis" });
        label.textContent = "step " + s;
        chartSvg.appendChild(label);
      });
      exps.forEach(function (exp, e) {
        var own = rows.filter(function (c) { return c[0] === e; }).sort(function (a, b) { return a[1] - b[1]; });
        if (!own.length) return;
        var colour = COLOURS[e % COLOURS.length];
        chartSvg.appendChild(svg("polyline", { points: own.map(function (c) { return x(c[1]) + "," + y(c[3] ? c[2] / c[3] : 0); }).join(" "),
                                               fill: "none", stroke: colour, "stroke-width": "1.5" }));
        own.forEach(function (c) {
          var share = c[3] ? c[2] / c[3] : 0;
          var link = svg("a", { href: stepUrl(e, c[1], 1), class: "td-search-point", "data-step": c[1], "data-exp": e });
          var dot = svg("circle", { cx: x(c[1]), cy: y(share), r: "3.5", fill: colour });
          var tip = svg("title");
          tip.textContent = (exps.length > 1 ? exp.name + " · " : "") + "step " + c[1] + ": " + c[2] + " of " + c[3] +
            " responses (" + Math.round(share * 1000) / 10 + "%)";
          dot.appendChild(tip);
          link.appendChild(dot);
          chartSvg.appendChild(link);
        });
      });
      chart.textContent = "";
      chart.appendChild(chartSvg);
    }

    /* "find across the run" from a row of the forking-token table: that token, as written, in
       every experiment's responses */
    document.querySelectorAll("table.td-forking code.td-tok").forEach(function (code) {
      if (code.querySelector(".td-null") || code.parentNode.querySelector("button.td-find")) return;
      var button = el("button", { type: "button", class: "td-find", title: "find this token across the run" }, "find");
      button.addEventListener("click", function () {
        query.value = code.textContent;
        regex.checked = false;
        matchCase.checked = true;
        where.value = "r";
        expBoxes.forEach(function (b) { b.checked = true; });
        box.scrollIntoView({ block: "start" });
        schedule(0);
      });
      code.insertAdjacentElement("afterend", button);
    });

    form.addEventListener("input", function (event) { schedule(event.target === query ? 60 : 150); });
    form.addEventListener("change", function () { schedule(0); });
    restore();
    if (query.value) schedule(0);
  }

  /* --- a step page opened from a result: the match highlighted ----------------------------- */
  function textRegex(params) {
    var pattern = params.get("td-q");
    if (!pattern) return null;
    var source = params.get("td-re") === "1" ? pattern : pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    try { return new RegExp(source, "g" + (params.get("td-case") === "1" ? "" : "i") + "m"); } catch (err) { return null; }
  }

  function ranges(re, text) {
    var out = [], m;
    re.lastIndex = 0;
    while ((m = re.exec(text)) !== null && out.length < 1000) {
      if (m[0].length === 0) { re.lastIndex++; continue; }
      out.push([m.index, m.index + m[0].length]);
    }
    return out;
  }

  /* Marks the token elements a match covers (the tokens stay as they are). */
  function markTokens(section, re, minimum) {
    section.querySelectorAll("button.td-more").forEach(function (b) { b.click(); });
    var tokens = Array.prototype.slice.call(section.querySelectorAll(".td-tokens > i:not(.td-end)"));
    var starts = [], text = "";
    tokens.forEach(function (t) { starts.push(text.length); text += t.textContent; });
    var found = [];
    ranges(re, text).forEach(function (r) {
      var covered = [];
      for (var i = 0; i < tokens.length; i++) {
        var s = starts[i], e = s + tokens[i].textContent.length;
        if (e > r[0] && s < r[1]) covered.push(tokens[i]);
      }
      if (minimum !== null && !covered.some(function (t) { return num(t.getAttribute("data-e")) !== null && Number(t.getAttribute("data-e")) >= minimum - 5e-5; })) return;
      covered.forEach(function (t) { t.classList.add("td-found"); });
      found = found.concat(covered);
    });
    return found;
  }

  /* Wraps matches inside the text nodes of `root` in <mark> elements (split text nodes). */
  function markText(root, re) {
    var walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    var nodes = [], starts = [], text = "", node;
    while ((node = walker.nextNode())) { nodes.push(node); starts.push(text.length); text += node.data; }
    var marks = [];
    ranges(re, text).reverse().forEach(function (r) {
      for (var i = nodes.length - 1; i >= 0; i--) {
        var s = starts[i], e = s + nodes[i].data.length;
        if (e <= r[0] || s >= r[1]) continue;
        var a = Math.max(r[0], s) - s, b = Math.min(r[1], e) - s;
        var target = nodes[i];
        if (b < target.data.length) target.splitText(b);
        if (a > 0) target = target.splitText(a);
        var mark = el("mark", { class: "td-found" });
        target.parentNode.insertBefore(mark, target);
        mark.appendChild(target);
        marks.unshift(mark);
      }
    });
    return marks;
  }

  function highlightStep() {
    var params = new URLSearchParams(location.search);
    var re = textRegex(params);
    var anchor = location.hash ? document.getElementById(decodeURIComponent(location.hash.slice(1))) : null;
    if (!re || !anchor) return;
    var section = anchor.closest(".td-traj");
    if (!section || section.getAttribute("data-td-found")) return;
    section.setAttribute("data-td-found", "1");
    section.classList.add("td-search-target");
    [section, section.closest(".td-group")].forEach(function (node) {  // shown even if the page's filter hides it
      if (node) node.classList.remove("td-hidden");
    });
    var found = [];
    var minimum = num(params.get("td-min"));
    if (params.get("td-in") === "p") {
      var group = section.closest(".td-group");
      var prompt = section.querySelector(".td-prompt") || (group && group.querySelector(":scope > details.td-prompt"));
      if (prompt) {
        prompt.open = true;
        found = markText(prompt.querySelector("pre") || prompt, re);
      }
    } else {
      found = markTokens(section, re, minimum);
      if (!found.length) {
        var plain = section.querySelector(".td-plain");
        if (plain) found = markText(plain, re);
      }
      if (!found.length) {
        section.querySelectorAll(".td-turn:not(.td-model-turn) pre").forEach(function (pre) { found = found.concat(markText(pre, re)); });
      }
    }
    if (found.length) {
      var first = found[0];
      requestAnimationFrame(function () { first.scrollIntoView({ block: "center" }); });
    }
  }

  /* --- a step page: "find across the run" for text selected in a response or prompt ---------- */
  var findLink = null;
  function offerFind() {
    if (findLink) { findLink.remove(); findLink = null; }
    var selection = window.getSelection();
    var up = document.querySelector("a.td-up");
    if (!up || !selection || selection.isCollapsed || !selection.rangeCount) return;
    var text = selection.toString();
    var range = selection.getRangeAt(0);
    var where = range.commonAncestorContainer;
    where = where.nodeType === 1 ? where : where.parentNode;
    if (!text.trim() || text.length > 200 || !where.closest || !where.closest(".td-tokens, .td-text, .td-plain")) return;
    var params = new URLSearchParams();
    params.set("td-q", text);
    params.set("td-case", "1");
    if (where.closest(".td-prompt")) params.set("td-in", "p");
    params.set("td-exp", "*");
    var box = range.getBoundingClientRect();
    findLink = el("a", { class: "td-find-link", href: up.getAttribute("href") + "?" + params.toString() + "#td-search" },
                  "find across the run");
    findLink.style.left = Math.max(4, box.left) + "px";
    findLink.style.top = (box.bottom + 4) + "px";
    document.body.appendChild(findLink);
  }
  document.addEventListener("mouseup", function (event) {
    if (event.target.closest && event.target.closest(".td-find-link")) return;
    if (document.querySelector(".td-step")) setTimeout(offerFind, 0);
  });
  document.addEventListener("keyup", function (event) {
    if (event.shiftKey && document.querySelector(".td-step")) offerFind();
  });
  window.addEventListener("scroll", function () {  /* the link follows its selection; gone with it */
    if (!findLink) return;
    var selection = window.getSelection();
    if (!selection || selection.isCollapsed || !selection.rangeCount) { findLink.remove(); findLink = null; return; }
    var box = selection.getRangeAt(0).getBoundingClientRect();
    findLink.style.left = Math.max(4, box.left) + "px";
    findLink.style.top = (box.bottom + 4) + "px";
  }, { passive: true });

  /* --- init, and the "/" key ---------------------------------------------------------------- */
  function init() {
    document.querySelectorAll(".td-search").forEach(setupBox);
    if (document.querySelector(".td-step") && location.search.indexOf("td-q=") >= 0) highlightStep();
  }

  /* "/" focuses this search where the page has it; Material's own search keeps "s" and "f"
     (and "/" on every other page). Captured before Material's handler on window sees it. */
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var focus = document.activeElement;
    if (focus && (/^(INPUT|TEXTAREA|SELECT)$/.test(focus.tagName) || focus.isContentEditable)) return;
    var input = document.querySelector(".td-search-input");
    if (!input) return;
    event.preventDefault();
    event.stopPropagation();
    input.focus();
    input.select();
  }, true);

  /* both: Material's document$ after each instant navigation, and the page load itself (on a
     page opened from disk document$ may never emit); init does each page's work once */
  if (window.document$ && typeof window.document$.subscribe === "function") window.document$.subscribe(init);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
