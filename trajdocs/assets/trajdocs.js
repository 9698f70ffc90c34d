/* trajdocs step pages: display settings, token details, heat map, re-flagging, sorting and
   keyboard navigation. One set of delegated listeners on the document; page state is applied on
   every page load, including Material's instant navigation (document$). No dependencies. */
(function () {
  "use strict";
  var STORE = "trajdocs.settings";
  var HEAT_LEVELS = 10;
  var tip = null;
  var tipToken = null;

  /* --- settings, remembered across pages and visits ------------------------------------- */
  function loadState() {
    try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch (e) { return {}; }
  }
  function saveState(state) {
    try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* storage disabled */ }
  }
  function remember(key, value) {
    var state = loadState();
    if (value === null) delete state[key]; else state[key] = value;
    saveState(state);
  }

  /* --- tokens --------------------------------------------------------------------------- */
  /* The exact text of a token: data-raw holds it JSON-escaped where HTML cannot (NUL, lone surrogates). */
  function tokenText(token) {
    var raw = token.getAttribute("data-raw");
    if (raw === null) return token.textContent;
    try { return JSON.parse('"' + raw + '"'); } catch (e) { return token.textContent; }
  }
  window.trajdocsTokenText = tokenText;

  /* Every token of a trajectory, the ones still collapsed in the template included. */
  function allTokens(section) {
    var list = [];
    containers(section).forEach(function (box) { list = list.concat(containerTokens(box)); });
    return list;
  }
  /* The token containers of a trajectory: its response, or each model turn of a conversation. */
  function containers(section) {
    return Array.prototype.slice.call(section.querySelectorAll(".td-tokens"));
  }
  /* A container's tokens in order, the ones still collapsed in its template included. */
  function containerTokens(box) {
    var list = Array.prototype.slice.call(box.children);
    var rest = box.nextElementSibling;
    if (rest && rest.matches("template.td-rest")) list = list.concat(Array.prototype.slice.call(rest.content.children));
    return list;
  }
  function score(token) {
    var value = token.getAttribute("data-e");
    return value === null ? NaN : parseFloat(value);
  }

  /* --- display toggles (the seed viewer's options) -------------------------------------- */
  function applyToggle(step, key, on) {
    step.classList.toggle("td-off-" + key, !on);
    if (key === "meta") step.querySelectorAll("details.td-meta-box").forEach(function (d) { d.open = on; });
    if (on && (key === "gen" || key === "pure")) fillTextBlocks(step);
  }

  /* generated_text / pure_generated_text equal to the tokens joined are not repeated in the
     page: their blocks are filled from the tokens when first shown. */
  function fillTextBlocks(step) {
    step.querySelectorAll("pre[data-from-tokens]").forEach(function (pre) {
      var parts = [pre.getAttribute("data-tail") || ""];
      allTokens(pre.closest(".td-traj")).forEach(function (t) { parts.push(tokenText(t)); });
      pre.textContent = parts.join("");
      pre.removeAttribute("data-from-tokens");
    });
  }

  /* --- colour: flags or heat map -------------------------------------------------------- */
  function applyMode(step, mode) {
    if (channelSpec(step)) return;  /* coloured by another channel: the entropy's mode waits */
    var heat = mode === "heat" && step.hasAttribute("data-heat-max");
    step.classList.toggle("td-heat", heat);
    if (!heat || step.hasAttribute("data-heat-done")) return;
    var max = parseFloat(step.getAttribute("data-heat-max")) || 1;
    step.querySelectorAll(".td-traj").forEach(function (section) {
      allTokens(section).forEach(function (token) {
        var value = score(token);
        if (isNaN(value)) return;
        var level = Math.max(0, Math.min(HEAT_LEVELS - 1, Math.floor(value / max * HEAT_LEVELS)));
        token.classList.add("e" + level);
      });
    });
    step.setAttribute("data-heat-done", "");
  }

  /* --- re-flag the top k% of each trajectory's tokens by entropy or the chosen channel -- */
  function applyRatio(step, percent) {
    var slider = step.querySelector("input[data-td-setting='ratio']");
    if (!slider) return;
    var fileRatio = parseFloat(step.getAttribute("data-file-ratio"));
    var note = step.querySelector(".td-ratio-note");
    var out = step.querySelector(".td-ratio-out");
    var spec = channelSpec(step);
    var select = setting(step, "channel");
    var byEntropy = !spec && (!select || select.value === "entropy");
    step.querySelectorAll(".td-traj").forEach(function (section) {
      var tokens, rank;
      if (spec && percent !== null) {
        var p = sectionValues(section, spec);
        tokens = p.tokens;
        rank = new Map();
        p.tokens.forEach(function (t, i) { if (isFinite(p.values[i])) rank.set(t, strength(spec, p.values[i])); });
      } else {
        tokens = allTokens(section);
      }
      tokens.forEach(function (t) {  // remember the file's own flags once
        if (!t.hasAttribute("data-f")) t.setAttribute("data-f", t.classList.contains("h") ? "1" : "0");
      });
      if (percent === null || (!spec && !byEntropy)) {
        tokens.forEach(function (t) { t.classList.toggle("h", t.getAttribute("data-f") === "1"); });
        return;
      }
      var scored = spec ? tokens.filter(function (t) { return rank.has(t); })
                        : tokens.filter(function (t) { return !isNaN(score(t)); });
      var key = spec ? function (t) { return rank.get(t); } : score;
      var count = Math.min(scored.length, Math.max(1, Math.floor(tokens.length * percent / 100)));
      var ranked = scored.slice().sort(function (a, b) { return key(b) - key(a); });
      var chosen = new Set(ranked.slice(0, count));
      tokens.forEach(function (t) { t.classList.toggle("h", chosen.has(t)); });
    });
    var what = spec ? (spec.scale === "div" ? "distance of " + spec.label + " from " + rounded(spec.centre, 3)
                                           : spec.scale === "neg" ? "\u2212" + spec.label : spec.label)
                    : "entropy score";
    var known = !isNaN(fileRatio);
    var shown = percent === null ? (known ? Math.round(fileRatio * 100) : parseInt(slider.value, 10)) : percent;
    slider.value = String(Math.min(shown, parseInt(slider.max, 10)));
    if (out) out.textContent = percent === null ? (known ? (fileRatio * 100).toFixed(1) + "%" : "off") : percent + "%";  /* as the legend */
    if (note) {
      note.textContent = percent === null
        ? (known ? "as flagged in the file (" + (fileRatio * 100).toFixed(1) + "% of this step's tokens)"
                 : "none flagged (the file flags no tokens)")
        : (!spec && !byEntropy) ? "none flagged (choose a channel to flag by)"
        : "re-flagged here: the top " + percent + "% of each trajectory's tokens by " + what;
    }
  }

  /* --- sort and filter trajectories ----------------------------------------------------- */
  function applyOrder(step, sort, filter) {
    var sections = Array.prototype.slice.call(step.querySelectorAll(".td-traj"));
    var rows = {};
    step.querySelectorAll(".td-summary tbody tr").forEach(function (row) { rows[row.getAttribute("data-index")] = row; });
    var field = sort ? sort.split("-")[0] : null;
    var sign = sort && sort.split("-")[1] === "asc" ? 1 : -1;
    var order = sections.slice();
    if (field) {
      order.sort(function (a, b) {
        var x = parseFloat(a.getAttribute("data-" + field));
        var y = parseFloat(b.getAttribute("data-" + field));
        if (isNaN(x) !== isNaN(y)) return isNaN(x) ? 1 : -1;  // missing values last
        if (isNaN(x) || x === y) return parseInt(a.getAttribute("data-index"), 10) - parseInt(b.getAttribute("data-index"), 10);
        return sign * (x - y);
      });
    }
    step.classList.toggle("td-sorted", !!field);
    var tbody = step.querySelector(".td-summary tbody");
    order.forEach(function (section, rank) {
      var correct = section.getAttribute("data-correct");
      var hidden = (filter === "correct" && correct !== "1") || (filter === "incorrect" && correct !== "0");
      section.style.order = field ? String(rank) : "";
      section.classList.toggle("td-hidden", hidden);
      var row = rows[section.getAttribute("data-index")];
      if (row) {
        row.hidden = hidden;
        if (tbody) tbody.appendChild(row);
      }
    });
    step.querySelectorAll(".td-group").forEach(function (group) {
      group.classList.toggle("td-hidden", !group.querySelector(".td-traj:not(.td-hidden)"));
    });
  }

  /* --- page set-up ---------------------------------------------------------------------- */
  function setting(step, name) {
    return step.querySelector("[data-td-setting='" + name + "']");
  }

  function value(control) {  /* every control is optional: a page shows only those its data has */
    return control ? control.value : "";
  }

  function init() {
    hideTip();
    if (observer) observer.disconnect();  /* trajectories of the page left behind (instant navigation) */
    prepareTables();
    var state = loadState();
    document.querySelectorAll(".td-step").forEach(function (step) {
      step.querySelectorAll("input[data-td-toggle]").forEach(function (box) {
        var key = box.getAttribute("data-td-toggle");
        if (Object.prototype.hasOwnProperty.call(state, key)) box.checked = !!state[key];
        applyToggle(step, key, box.checked);
      });
      var mode = setting(step, "mode");
      if (mode && state.mode === "heat" && step.hasAttribute("data-heat-max")) mode.value = "heat";
      var channel = setting(step, "channel");
      if (channel && typeof state.channel === "string" &&
          Array.prototype.some.call(channel.options, function (o) { return o.value === state.channel; })) channel.value = state.channel;
      if (channelSpec(step)) applyChannel(step);
      else if (mode) applyMode(step, mode.value);
      if (typeof state.ratio === "number") applyRatio(step, state.ratio);
      var sort = setting(step, "sort");
      var filter = setting(step, "filter");
      if (sort && state.sort) sort.value = state.sort;
      if (filter && state.filter) filter.value = state.filter;
      if ((sort && sort.value) || (filter && filter.value)) applyOrder(step, value(sort), value(filter));
      step.querySelectorAll(".td-tokens .h").forEach(function (token) { token.tabIndex = 0; });
    });
    targetTrajectory();
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!target.closest) return;
    var step = target.closest(".td-step");
    if (!step) return;
    if (target.matches("input[data-td-toggle]")) {
      var key = target.getAttribute("data-td-toggle");
      remember(key, target.checked);
      applyToggle(step, key, target.checked);
    } else if (target.matches("[data-td-setting='channel']")) {
      remember("channel", target.value);
      applyChannel(step);
      var slider = setting(step, "ratio");
      var state = loadState();
      if (slider && typeof state.ratio === "number") applyRatio(step, state.ratio);
      step.querySelectorAll(".td-tokens .h").forEach(function (token) { token.tabIndex = 0; });
    } else if (target.matches("[data-td-setting='mode']")) {
      remember("mode", target.value);
      applyMode(step, target.value);
    } else if (target.matches("[data-td-setting='sort'], [data-td-setting='filter']")) {
      remember(target.getAttribute("data-td-setting"), target.value || null);
      applyOrder(step, value(setting(step, "sort")), value(setting(step, "filter")));
    }
  });

  document.addEventListener("input", function (event) {
    var target = event.target;
    if (!target.matches || !target.matches("input[data-td-setting='ratio']")) return;
    var percent = parseInt(target.value, 10);
    remember("ratio", percent);
    applyRatio(target.closest(".td-step"), percent);
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest) return;
    var header = target.closest("table.td-sortable th");
    if (header) { sortTable(header); return; }
    var versus = target.closest("button.td-compare");
    if (versus) { compareGroup(versus); return; }
    var reset = target.closest("[data-td-reset='ratio']");
    if (reset) {
      remember("ratio", null);
      applyRatio(reset.closest(".td-step"), null);
      return;
    }
    var more = target.closest("button.td-more");
    if (more) {
      var rest = more.previousElementSibling;
      var tokens = rest && rest.previousElementSibling;
      if (rest && tokens && rest.matches("template.td-rest")) {
        tokens.appendChild(rest.content);
        tokens.querySelectorAll(".h").forEach(function (token) { token.tabIndex = 0; });
        rest.remove();
        more.remove();
      }
      return;
    }
    var thumb = target.closest("img.td-thumb");
    if (thumb && !thumb.closest("a")) thumb.classList.toggle("td-zoom");
  });

  /* --- sortable tables: click (or Enter on) a header ------------------------------------ */
  function cellValue(row, column) {
    var cell = row.children[column];
    if (!cell) return { number: NaN, text: "" };
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    return { number: raw === "" ? NaN : parseFloat(raw.replace(/[,%]/g, "")), text: raw };
  }

  function sortTable(th) {
    var table = th.closest("table");
    var tbody = table.tBodies[0];
    if (!tbody) return;
    var column = Array.prototype.indexOf.call(th.parentNode.children, th);
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    th.parentNode.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(tbody.rows);
    var numeric = rows.every(function (r) { var v = cellValue(r, column); return v.text === "" || v.text === "\u2014" || !isNaN(v.number); });
    rows.sort(function (a, b) {
      var x = cellValue(a, column), y = cellValue(b, column);
      if (numeric) {
        if (isNaN(x.number) !== isNaN(y.number)) return isNaN(x.number) ? 1 : -1;  // blanks last
        return ascending ? x.number - y.number : y.number - x.number;
      }
      return ascending ? x.text.localeCompare(y.text) : y.text.localeCompare(x.text);
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
  }

  function prepareTables() {
    document.querySelectorAll("table.td-sortable th").forEach(function (th) {
      th.tabIndex = 0;
      th.title = "sort by this column";
    });
  }

  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && event.target.matches && event.target.matches("table.td-sortable th")) sortTable(event.target);
  });

  /* --- a prompt group's best and worst responses, side by side -------------------------- */
  function compareGroup(button) {
    var group = button.closest(".td-group");
    var view = group.querySelector(".td-versus");
    if (view) { view.remove(); button.textContent = "Best and worst side by side"; return; }
    var sections = Array.prototype.slice.call(group.querySelectorAll(".td-traj")).filter(function (s) {
      return !isNaN(parseFloat(s.getAttribute("data-reward")));
    });
    if (sections.length < 2) return;
    sections.sort(function (a, b) { return parseFloat(b.getAttribute("data-reward")) - parseFloat(a.getAttribute("data-reward")); });
    view = document.createElement("div");
    view.className = "td-versus";
    [["best", sections[0]], ["worst", sections[sections.length - 1]]].forEach(function (pair) {
      var column = document.createElement("div");
      var label = document.createElement("div");
      label.className = "td-label";
      label.textContent = pair[0] + ": trajectory " + pair[1].getAttribute("data-index") + ", reward " + pair[1].getAttribute("data-reward");
      column.appendChild(label);
      var tokens = pair[1].querySelector(".td-tokens");
      if (tokens) {
        var copy = tokens.cloneNode(true);
        var rest = pair[1].querySelector("template.td-rest");
        if (rest) copy.appendChild(rest.content.cloneNode(true));
        column.appendChild(copy);
      }
      view.appendChild(column);
    });
    button.insertAdjacentElement("afterend", view);
    button.textContent = "Close the comparison";
  }

  /* --- token details on hover and focus ------------------------------------------------- */
  function visible(text) {
    return text.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5\n").replace(/\t/g, "\u2192")
      .replace(/\r/g, "\u240d").replace(/\u0000/g, "\u2400");
  }

  function tokenOf(node) {
    if (!node || !node.closest) return null;
    var token = node.closest(".td-tokens > i");
    if (!token) return null;
    var step = token.closest(".td-step");
    if (!step || step.classList.contains("td-off-scores")) return null;
    return token;
  }

  /* IEEE half-precision float at byte offset (little-endian). */
  function float16(view, offset) {
    var bits = view.getUint16(offset, true);
    var sign = bits & 0x8000 ? -1 : 1;
    var exponent = (bits >> 10) & 0x1f;
    var fraction = bits & 0x3ff;
    if (exponent === 0) return sign * Math.pow(2, -14) * (fraction / 1024);
    if (exponent === 31) return fraction ? NaN : sign * Infinity;
    return sign * Math.pow(2, exponent - 15) * (1 + fraction / 1024);
  }

  /* Every float16 bit pattern's value, made once (the same as float16() on each). */
  var HALF = null;
  function halfTable() {
    if (!HALF) {
      var view = new DataView(new ArrayBuffer(2));
      HALF = new Float32Array(65536);
      for (var bits = 0; bits < 65536; bits++) { view.setUint16(0, bits, true); HALF[bits] = float16(view, 0); }
    }
    return HALF;
  }

  /* Per-token numbers of a token container (data-<name>): float16 little-endian in base64, or
     "!" + float32; one value stands for all tokens. Decoded once per container and name, when
     first needed (a hover, or choosing that channel). */
  function channelValues(container, name) {
    var cache = container.__trajdocs || (container.__trajdocs = {});
    if (name in cache) return cache[name];
    var raw = container.getAttribute("data-" + name);
    cache[name] = null;
    if (raw === null) return null;
    try {
      var wide = raw.charAt(0) === "!";
      var binary = atob(wide ? raw.slice(1) : raw);
      var bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
      var view = new DataView(bytes.buffer);
      var size = wide ? 4 : 2;
      var values = new Float32Array(Math.floor(bytes.length / size));
      var table = wide ? null : halfTable();
      for (var j = 0; j < values.length; j++) values[j] = wide ? view.getFloat32(j * 4, true) : table[view.getUint16(j * 2, true)];
      cache[name] = { values: values, digits: wide ? 4 : 3 };
    } catch (e) { /* not base64: no values */ }
    return cache[name];
  }

  /* One token's value of a channel (NaN when the file has none for it). */
  function channelAt(packed, position) {
    if (!packed) return NaN;
    var count = packed.values.length;
    var index = count === 1 ? 0 : position;
    return index < count ? packed.values[index] : NaN;
  }

  function rounded(value, digits) {
    return String(Number(value.toPrecision(digits)));
  }

  function valueAt(container, name, position) {
    var packed = channelValues(container, name);
    var value = channelAt(packed, position);
    return isNaN(value) ? null : rounded(value, packed.digits);
  }

  /* The channels a token's details show, in model.CHANNELS order, with short labels. */
  var CHANNEL_LABELS = [["surprisal", "surprisal"], ["mismatch", "mismatch |\u0394 log-prob|"], ["mismatch_kl", "mismatch KL"],
    ["advantage", "advantage"], ["token_reward", "token reward"], ["logprob", "log-prob"],
    ["ref_logprob", "ref log-prob"], ["importance_ratio", "importance ratio"]];

  function shortLabel(name) {
    for (var i = 0; i < CHANNEL_LABELS.length; i++) if (CHANNEL_LABELS[i][0] === name) return CHANNEL_LABELS[i][1];
    return name;
  }

  /* --- colour by a per-token channel (the "Colour by" control) -------------------------- */
  function channelSpec(step) {
    var select = setting(step, "channel");
    if (!select || !select.value || select.value === "entropy") return null;
    var option = select.options[select.selectedIndex];
    return {
      name: select.value,
      label: option.textContent,
      from: option.getAttribute("data-from") || select.value,
      sign: parseFloat(option.getAttribute("data-sign") || "1"),
      scale: option.getAttribute("data-scale") || "seq",
      centre: parseFloat(option.getAttribute("data-centre") || "0")
    };
  }

  /* The chosen channel's value of each token of a trajectory, in token order (NaN where none):
     decoded from the containers' attributes, no token element touched. */
  function sectionNumbers(section, spec) {
    var values = [];
    containers(section).forEach(function (box) {
      var n = box.children.length;
      var rest = box.nextElementSibling;
      if (rest && rest.matches("template.td-rest")) n += rest.content.children.length;
      var packed = channelValues(box, spec.from);
      for (var i = 0; i < n; i++) values.push(spec.sign * channelAt(packed, i));
    });
    return values;
  }
  function sectionValues(section, spec) {
    return { tokens: allTokens(section), values: sectionNumbers(section, spec) };
  }

  /* What ranks and colours a value: its distance from the centre on a diverging scale, the
     value itself on a sequential one, −value for a log-prob. */
  function strength(spec, value) {
    if (spec.scale === "div") return Math.abs(value - spec.centre);
    return spec.scale === "neg" ? -value : value;
  }

  /* Choosing a channel computes its step-wide scale and each trajectory's statistics from the
     decoded values alone; tokens get their colour a trajectory at a time, when it comes near the
     screen, so a step of long responses switches at once. */
  function applyChannel(step) {
    var spec = channelSpec(step);
    var sections = Array.prototype.slice.call(step.querySelectorAll(".td-traj"));
    step.querySelectorAll(".td-legend-chan").forEach(function (p) { p.hidden = true; });
    step.querySelectorAll(".td-chan-stats").forEach(function (p) { p.remove(); });
    if (!spec) {
      sections.forEach(function (section) {
        section.__tdJob = null;
        if (observer) observer.unobserve(section);
        clearSection(section);
      });
      step.classList.remove("td-chan");
      var mode = setting(step, "mode");
      applyMode(step, mode ? mode.value : "flag");
      return;
    }
    var per = sections.map(function (section) { return sectionNumbers(section, spec); });
    var all = [];
    per.forEach(function (values) { values.forEach(function (v) { if (isFinite(v)) all.push(strength(spec, v)); }); });
    var sorted = Float64Array.from(all).sort();
    var max = sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))] : 0;
    if (!(max > 0)) max = sorted.length ? Math.max(Math.abs(sorted[sorted.length - 1]), 1e-12) : 1;
    sections.forEach(function (section, k) {
      channelStats(section, spec, per[k]);
      section.__tdJob = { spec: spec, max: max };
      watch(section);
    });
    step.classList.remove("td-heat");
    step.classList.add("td-chan");
    var legend = step.querySelector(spec.scale === "div" ? ".td-legend-div" : ".td-legend-seq");
    if (legend) {
      legend.hidden = false;
      var fill = function (cls, text) { var el = legend.querySelector(cls); if (el) el.textContent = text; };
      fill(".td-chan-name", spec.label);
      fill(".td-chan-hi", spec.scale === "neg" ? "\u2212" + rounded(max, 3) : rounded(max, 3));
      fill(".td-chan-lo", "0");
      fill(".td-chan-centre", rounded(spec.centre, 3));
      fill(".td-chan-ends", rounded(spec.centre - max, 3) + " \u2026 " + rounded(spec.centre, 3) + " \u2026 " + rounded(spec.centre + max, 3));
      fill(".td-chan-note", spec.scale === "neg" ? "(coloured by \u2212log-prob: darker is less likely)" : "");
    }
  }

  var observer = null;
  function watch(section) {
    if (!("IntersectionObserver" in window)) { colourSection(section); return; }
    if (!observer) {
      observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (entry) {
          if (entry.isIntersecting) { observer.unobserve(entry.target); colourSection(entry.target); }
        });
      }, { rootMargin: "1500px 0px" });
    }
    observer.unobserve(section);
    observer.observe(section);
  }

  /* Colour one trajectory's tokens by its pending channel: sequential levels c0-c9 from 0 to the
     step's 99th percentile; diverging levels v0-v8 around the centre, v4 (at it) uncoloured. */
  function colourSection(section) {
    var job = section.__tdJob;
    section.__tdJob = null;
    clearSection(section);
    if (!job) return;
    var spec = job.spec, max = job.max;
    var tokens = allTokens(section);
    var values = sectionNumbers(section, spec);
    var done = { tokens: [], classes: [] };
    for (var i = 0; i < tokens.length; i++) {
      var v = values[i], cls = "";
      if (!isFinite(v)) continue;
      if (spec.scale === "div") {
        var d = Math.max(-4, Math.min(4, Math.round((v - spec.centre) / max * 4)));
        cls = d === 0 ? "" : "v" + (d + 4);
      } else {
        cls = "c" + Math.max(0, Math.min(HEAT_LEVELS - 1, Math.floor(strength(spec, v) / max * HEAT_LEVELS)));
      }
      if (cls) { tokens[i].classList.add(cls); done.tokens.push(tokens[i]); done.classes.push(cls); }
    }
    section.__tdLevels = done;
    section.setAttribute("data-coloured", spec.name);
  }

  function clearSection(section) {
    var previous = section.__tdLevels;
    if (previous) previous.tokens.forEach(function (t, i) { t.classList.remove(previous.classes[i]); });
    section.__tdLevels = null;
    section.removeAttribute("data-coloured");
  }

  /* A trajectory's mean, lowest and highest value of the chosen channel, under its statistics. */
  function channelStats(section, spec, values) {
    var n = 0, sum = 0, lo = Infinity, hi = -Infinity;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (!isFinite(v)) continue;
      n++; sum += v;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    var p = document.createElement("p");
    p.className = "td-note td-chan-stats";
    var label = spec.name === "surprisal" && spec.from === "logprob" ? "surprisal (\u2212log-prob)" : shortLabel(spec.name);
    p.textContent = n ? label + ": mean " + rounded(sum / n, 4) + ", min " + rounded(lo, 4) + ", max " + rounded(hi, 4) +
      " over " + n.toLocaleString("en") + " token" + (n === 1 ? "" : "s")
      : label + ": no values for this trajectory";
    var anchor = section.querySelector(".td-stats") || section.querySelector(".td-traj-title");
    var note = anchor && anchor.nextElementSibling;  /* after the statistics' own note */
    if (note && note.matches("p.td-note:not(.td-chan-stats)")) anchor = note;
    if (anchor) anchor.insertAdjacentElement("afterend", p);
  }

  function line(parent, label, value) {
    var row = document.createElement("div");
    var b = document.createElement("b");
    b.textContent = label + " ";
    row.appendChild(b);
    row.appendChild(document.createTextNode(value));
    parent.appendChild(row);
  }

  function placeTip() {
    if (!tip || !tipToken) return;
    var box = tipToken.getBoundingClientRect();
    if (box.bottom < 0 || box.top > window.innerHeight) { hideTip(); return; }
    var top = box.bottom + 6;
    tip.style.left = Math.max(4, Math.min(box.left, window.innerWidth - tip.offsetWidth - 4)) + "px";
    if (top + tip.offsetHeight > window.innerHeight) top = box.top - tip.offsetHeight - 6;
    tip.style.top = top + "px";
  }

  function showTip(token) {
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "td-tip";
      tip.setAttribute("role", "tooltip");
      document.body.appendChild(tip);
    }
    tip.textContent = "";
    var container = token.parentNode;
    var position = Array.prototype.indexOf.call(container.children, token);
    var value = token.getAttribute("data-e");
    // only values the file has; to 4 decimals, as the seed viewer shows them (pages keep 6 digits)
    if (value !== null) line(tip, "entropy", /^-?[0-9.]+(e[-+]?[0-9]+)?$/i.test(value) ? Number(value).toFixed(4) : value);
    line(tip, "position", String(position));
    if (token.classList.contains("h")) line(tip, "flag", "high-entropy");
    CHANNEL_LABELS.forEach(function (pair) {
      var shownValue = valueAt(container, pair[0], position);
      if (shownValue !== null) line(tip, pair[1], shownValue);
      else if (pair[0] === "surprisal" && !container.hasAttribute("data-surprisal")) {
        var logprob = valueAt(container, "logprob", position);  /* its definition: −log-prob */
        if (logprob !== null) line(tip, "surprisal", String(-Number(logprob)) + " (\u2212log-prob)");
      }
    });
    if (container.classList.contains("td-ids")) line(tip, "token id", tokenText(token) + " (no tokenizer given: the id as written)");
    else if (token.classList.contains("td-end")) line(tip, "token", "the response\u2019s last token: not in generated_tokens " +
                                                          "(the end of sequence, or the last token of a response cut at the length limit)");
    else if (tokenText(token) === "") line(tip, "token", "empty (a special token: decoded with skip_special_tokens)");
    else line(tip, "token", "\u201c" + visible(tokenText(token)) + "\u201d");
    var cut = token.getAttribute("data-cut");  /* a token too long for the page: its opening only */
    if (cut !== null) line(tip, "cut", "the first " + token.textContent.length.toLocaleString("en") + " of " +
                           Number(cut).toLocaleString("en") + " characters shown; the whole token is in the step's long texts");
    tip.hidden = false;
    tipToken = token;
    placeTip();
  }
  function hideTip() {
    if (tip) tip.hidden = true;
    tipToken = null;
  }

  document.addEventListener("mouseover", function (event) {
    var token = tokenOf(event.target);
    if (token) showTip(token); else if (tipToken) hideTip();
  });
  document.addEventListener("focusin", function (event) {
    var token = tokenOf(event.target);
    if (token) showTip(token); else hideTip();
  });
  document.addEventListener("focusout", hideTip);
  window.addEventListener("scroll", placeTip, { passive: true });

  /* --- copying text with collapsed runs of a special token: each run comes back whole ---- */
  document.addEventListener("copy", function (event) {
    var selection = window.getSelection();
    if (!selection || selection.rangeCount === 0 || !event.clipboardData) return;
    var fragment = selection.getRangeAt(0).cloneContents();
    var runs = fragment.querySelectorAll ? fragment.querySelectorAll(".td-run[data-n]") : [];
    if (!runs.length) return;
    runs.forEach(function (run) {
      var n = parseInt(run.getAttribute("data-n"), 10) || 1;
      run.textContent = new Array(n + 1).join(run.textContent);
    });
    var box = document.createElement("div");
    box.appendChild(fragment);
    event.clipboardData.setData("text/plain", box.textContent);
    event.preventDefault();
  });

  /* --- keyboard: p / n step, j / k trajectory ------------------------------------------- */
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    var focus = document.activeElement;
    if (focus && (/^(INPUT|TEXTAREA|SELECT)$/.test(focus.tagName) || focus.isContentEditable)) return;
    var step = document.querySelector(".td-step");
    if (!step) return;
    var key = event.key;
    if (key === "p" || key === "n") {
      var link = document.querySelector(key === "p" ? "a.td-prev" : "a.td-next");
      if (link) { event.preventDefault(); event.stopPropagation(); link.click(); }
    } else if (key === "j" || key === "k") {
      var sections = Array.prototype.slice.call(step.querySelectorAll(".td-traj:not(.td-hidden)"));
      sections.sort(function (a, b) { return a.getBoundingClientRect().top - b.getBoundingClientRect().top; });
      var offset = 80;  // below a sticky header
      var current = -1;
      sections.forEach(function (s, i) { if (s.getBoundingClientRect().top <= offset + 1) current = i; });
      var next = sections[key === "j" ? current + 1 : Math.max(0, current - 1)];
      if (next) {
        event.preventDefault();
        window.scrollBy(0, next.getBoundingClientRect().top - offset);
        var title = next.querySelector(".td-traj-title");
        if (title) { title.tabIndex = -1; title.focus({ preventScroll: true }); }
      }
    }
  }, true);

  /* --- links to one trajectory: #t5 (and the older #traj-5) open it and mark it -------- */
  function targetTrajectory() {
    var m = /^#(?:t|traj-)(\d+)$/.exec(window.location.hash);
    document.querySelectorAll(".td-traj.td-target").forEach(function (s) { s.classList.remove("td-target"); });
    if (!m) return;
    var section = document.querySelector(".td-traj[data-index='" + m[1] + "']");
    if (!section) return;
    section.classList.remove("td-hidden");  // shown even when a filter hides its kind
    var group = section.closest(".td-group");
    if (group) group.classList.remove("td-hidden");
    section.querySelectorAll("details.td-meta-box").forEach(function (d) { d.open = true; });
    section.classList.add("td-target");
    var title = section.querySelector(".td-traj-title");
    (title || section).scrollIntoView({ block: "start" });
  }
  window.addEventListener("hashchange", targetTrajectory);

  function linkTo(id) {
    return window.location.href.split("#")[0] + "#" + id;
  }
  function copied(button, text) {
    button.textContent = text;
    setTimeout(function () { button.textContent = "copy link"; }, 1500);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.td-copy-link") : null;
    if (!button) return;
    var url = linkTo(button.getAttribute("data-target"));
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(url).then(function () { copied(button, "copied"); },
                                              function () { window.prompt("Link to this trajectory:", url); });
    } else {
      window.prompt("Link to this trajectory:", url);
    }
  });

  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(init);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
