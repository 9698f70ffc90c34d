/* trajdocs: display toggles and token details. One set of delegated listeners on the document,
   page state (re)applied on every page load, including Material's instant navigation. */
(function () {
  "use strict";
  var STORE = "trajdocs.toggles";
  var tip = null;

  function loadState() {
    try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch (e) { return {}; }
  }
  function saveState(state) {
    try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { /* storage disabled */ }
  }
  function applyToggle(step, key, on) {
    step.classList.toggle("td-off-" + key, !on);
    if (on && (key === "gen" || key === "pure")) fillTextBlocks(step);
  }

  /* generated_text / pure_generated_text equal to the tokens joined are not repeated in the
     page: their blocks are filled from the tokens when first shown. */
  function fillTextBlocks(step) {
    step.querySelectorAll("pre[data-from-tokens]").forEach(function (pre) {
      var section = pre.closest(".td-traj");
      var parts = [pre.getAttribute("data-tail") || ""];
      section.querySelectorAll(".td-tokens > i").forEach(function (t) { parts.push(tokenText(t)); });
      var rest = section.querySelector("template.td-rest");
      if (rest) rest.content.querySelectorAll("i").forEach(function (t) { parts.push(tokenText(t)); });
      pre.textContent = parts.join("");
      pre.removeAttribute("data-from-tokens");
    });
  }

  function init() {
    hideTip();
    var state = loadState();
    document.querySelectorAll(".td-step").forEach(function (step) {
      step.querySelectorAll("input[data-td-toggle]").forEach(function (box) {
        var key = box.getAttribute("data-td-toggle");
        if (Object.prototype.hasOwnProperty.call(state, key)) box.checked = !!state[key];
        applyToggle(step, key, box.checked);
      });
      step.querySelectorAll(".td-tokens .h").forEach(function (token) { token.tabIndex = 0; });
    });
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[data-td-toggle]")) return;
    var key = box.getAttribute("data-td-toggle");
    var state = loadState();
    state[key] = box.checked;
    saveState(state);
    var step = box.closest(".td-step");
    if (step) applyToggle(step, key, box.checked);
  });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target.closest) return;
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

  /* The exact text of a token: data-raw holds it JSON-escaped where HTML cannot (NUL, lone surrogates). */
  function tokenText(token) {
    var raw = token.getAttribute("data-raw");
    if (raw === null) return token.textContent;
    try { return JSON.parse('"' + raw + '"'); } catch (e) { return token.textContent; }
  }
  window.trajdocsTokenText = tokenText;

  function visible(text) {
    return text.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5\n").replace(/\t/g, "\u2192")
      .replace(/\r/g, "\u240d").replace(/\u0000/g, "\u2400");
  }

  function tokenOf(node) {
    if (!node || !node.closest) return null;
    var token = node.closest(".td-tokens > i");
    if (!token || !(token.classList.contains("h") || token.hasAttribute("data-e"))) return null;
    var step = token.closest(".td-step");
    if (!step || step.classList.contains("td-off-scores")) return null;
    return token;
  }

  function line(parent, label, value) {
    var row = document.createElement("div");
    var b = document.createElement("b");
    b.textContent = label + " ";
    row.appendChild(b);
    row.appendChild(document.createTextNode(value));
    parent.appendChild(row);
  }

  function showTip(token) {
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "td-tip";
      tip.setAttribute("role", "tooltip");
      document.body.appendChild(tip);
    }
    tip.textContent = "";
    var score = token.getAttribute("data-e");
    line(tip, "entropy", score === null ? "not scored" : score);
    var position = Array.prototype.indexOf.call(token.parentNode.children, token);
    line(tip, "position", String(position));
    if (token.classList.contains("h")) line(tip, "flag", "high-entropy");
    line(tip, "token", "\u201c" + visible(tokenText(token)) + "\u201d");
    tip.hidden = false;
    var box = token.getBoundingClientRect();
    var top = box.bottom + 6;
    tip.style.left = Math.max(4, Math.min(box.left, window.innerWidth - tip.offsetWidth - 4)) + "px";
    if (top + tip.offsetHeight > window.innerHeight) top = box.top - tip.offsetHeight - 6;
    tip.style.top = top + "px";
  }
  function hideTip() {
    if (tip) tip.hidden = true;
  }

  document.addEventListener("mouseover", function (event) {
    var token = tokenOf(event.target);
    if (token) showTip(token); else hideTip();
  });
  document.addEventListener("focusin", function (event) {
    var token = tokenOf(event.target);
    if (token) showTip(token); else hideTip();
  });
  document.addEventListener("focusout", hideTip);
  window.addEventListener("scroll", hideTip, { passive: true });

  if (window.document$ && typeof window.document$.subscribe === "function") {
    window.document$.subscribe(init);
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
