// The item list of detailed_results.html: search, filters, sort and pages over the items
// embedded as JSON, so that the page stays small and fast however many items a run has. Every
// text reaches the page through textContent, never as markup. The state lives in the URL's
// hash, so a view can be linked to and reloaded.
(function () {
  "use strict";
  var PAGE = 100;
  var data = JSON.parse(document.getElementById("data").textContent);
  var items = data.items;
  var app = document.getElementById("app");
  var lower = null; // searchable text of each item, made on the first search

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function verdict(it) {
    return !it.answered ? "unanswered" : it.correct ? "correct" : "wrong";
  }
  function num(x) {
    return typeof x === "number" ? x.toFixed(3) : "–";
  }

  // Filters and sorts: value -> [label, test or key].
  var filters = {
    all: ["all items", null],
    correct: ["correct", function (it) { return verdict(it) === "correct"; }],
    wrong: ["wrong", function (it) { return verdict(it) === "wrong"; }],
    unanswered: ["unanswered", function (it) { return !it.answered; }]
  };
  if (data.multiple_choice) {
    filters.norm_correct = ["acc_norm correct", function (it) { return normRight(it); }];
    filters.norm_wrong = ["acc_norm wrong", function (it) { return it.answered && !normRight(it); }];
  }
  data.variants.forEach(function (name, i) {
    filters["v" + i + "+"] = [name + " correct", function (it) { return varRight(it, i) === true; }];
    filters["v" + i + "-"] = [name + " wrong", function (it) { return varRight(it, i) === false; }];
  });
  function normRight(it) {
    return !!it.choice && it.choice.acc_norm_pick === it.choice.target;
  }
  function varRight(it, i) {
    var v = it.variants && it.variants[i];
    return v ? v.correct : null;
  }
  var order = { correct: 0, wrong: 1, unanswered: 2 };
  var sorts = {
    id: ["item id", null],
    verdict: ["verdict", function (it) { return order[verdict(it)]; }],
    response: ["response length", function (it) { return it.prediction.length; }],
    prompt: ["prompt length", function (it) { return it.prompt.length; }]
  };
  data.metrics.forEach(function (name) {
    sorts["m:" + name] = [name, function (it) { return it.metrics ? it.metrics[name] || 0 : 0; }];
  });
  if (data.multiple_choice) {
    sorts.loglik = ["pick's log-likelihood", function (it) {
      var c = it.choice;
      return c && c.acc_pick !== null ? c.options[c.acc_pick].loglik : -Infinity;
    }];
  }
  function byId(a, b) {
    var x = Number(a.id), y = Number(b.id);
    if (a.id !== "" && b.id !== "" && !isNaN(x) && !isNaN(y)) return x - y;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  var state = { q: "", filter: "all", sort: "id", desc: false, page: 0 };
  function readHash() {
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      var p = kv.split("="), k = decodeURIComponent(p[0]), v = decodeURIComponent(p[1] || "");
      if (k === "q") state.q = v;
      if (k === "filter" && filters[v]) state.filter = v;
      if (k === "sort" && sorts[v]) state.sort = v;
      if (k === "desc") state.desc = v === "1";
      if (k === "page") state.page = Math.max(0, parseInt(v, 10) - 1 || 0);
    });
  }
  function writeHash() {
    var h = "q=" + encodeURIComponent(state.q) + "&filter=" + encodeURIComponent(state.filter) +
      "&sort=" + encodeURIComponent(state.sort) + "&desc=" + (state.desc ? 1 : 0) +
      "&page=" + (state.page + 1);
    try {
      history.replaceState(null, "", "#" + h);
    } catch (e) {
      // Some browsers refuse it for file:// pages; the view still works, unlinked.
    }
  }

  function selected() {
    var q = state.q.toLowerCase(), test = filters[state.filter][1], out = [];
    if (q && !lower) {
      lower = items.map(function (it) {
        return [it.id, it.prompt, it.prediction, it.target, it.extracted || ""].join("\n").toLowerCase();
      });
    }
    for (var i = 0; i < items.length; i++) {
      if (test && !test(items[i])) continue;
      if (q && lower[i].indexOf(q) < 0) continue;
      out.push(items[i]);
    }
    var key = sorts[state.sort][1];
    out.sort(key ? function (a, b) { return (key(a) - key(b)) || byId(a, b); } : byId);
    if (state.desc) out.reverse();
    return out;
  }

  function select(options, value, onChange) {
    var s = el("select");
    Object.keys(options).forEach(function (k) {
      var o = el("option", options[k][0]);
      o.value = k;
      s.appendChild(o);
    });
    s.value = value;
    s.onchange = function () { onChange(s.value); };
    return s;
  }

  function options(c) {
    var t = el("table", null, "options");
    var head = el("tr");
    ["", "option", "log-likelihood", "per char", ""].forEach(function (h) { head.appendChild(el("th", h)); });
    t.appendChild(head);
    c.options.forEach(function (o, i) {
      var marks = [];
      if (i === c.target) marks.push("target");
      if (i === c.acc_pick) marks.push("acc pick");
      if (i === c.acc_norm_pick) marks.push("acc_norm pick");
      var tr = el("tr", null, i === c.target ? "target" : "");
      [o.label, o.text, num(o.loglik), num(o.loglik_norm), marks.join(", ")].forEach(function (v) {
        tr.appendChild(el("td", v));
      });
      t.appendChild(tr);
    });
    return t;
  }

  function row(it) {
    var tr = el("tr");
    tr.appendChild(el("td", it.id));
    var v = verdict(it), cell = el("td", null, "verdict " + v);
    cell.appendChild(el("div", v));
    if (it.choice) cell.appendChild(el("div", "acc_norm: " + (normRight(it) ? "correct" : "wrong")));
    (it.variants || []).forEach(function (x) {
      cell.appendChild(el("div", x.name + ": " + (x.correct ? "correct" : "wrong") +
        " (" + (x.extracted === null ? "none" : x.extracted) + ")"));
    });
    Object.keys(it.metrics || {}).forEach(function (k) {
      cell.appendChild(el("div", k + ": " + it.metrics[k].toFixed(2)));
    });
    tr.appendChild(cell);
    tr.appendChild(el("td", it.target));
    tr.appendChild(el("td", it.extracted === null ? "none" : it.extracted));
    var response = el("td");
    response.appendChild(el("pre", it.prediction));
    if (it.choice) response.appendChild(options(it.choice));
    tr.appendChild(response);
    var prompt = el("td"), d = el("details");
    d.appendChild(el("summary", it.prompt.length + " chars"));
    d.appendChild(el("pre", it.prompt));
    prompt.appendChild(d);
    tr.appendChild(prompt);
    return tr;
  }

  var status = el("p", null, "status"), body = el("tbody"), pager = el("div", null, "pager");
  function draw() {
    var all = selected(), pages = Math.max(1, Math.ceil(all.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * PAGE, shown = all.slice(start, start + PAGE);
    status.textContent = all.length === 0 ? "No items match." :
      "Items " + (start + 1) + "–" + (start + shown.length) + " of " + all.length +
      (all.length < items.length ? " (of " + items.length + " in the run)" : "");
    body.textContent = "";
    shown.forEach(function (it) { body.appendChild(row(it)); });
    pager.textContent = "";
    var prev = el("button", "‹ previous"), next = el("button", "next ›");
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    prev.onclick = function () { state.page--; draw(); };
    next.onclick = function () { state.page++; draw(); };
    pager.appendChild(prev);
    pager.appendChild(el("span", " page " + (state.page + 1) + " of " + pages + " "));
    pager.appendChild(next);
    writeHash();
  }

  readHash();
  var controls = el("div", null, "controls");
  var search = el("input");
  search.type = "search";
  search.placeholder = "search prompt, response, target";
  search.value = state.q;
  var timer = null;
  search.oninput = function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.q = search.value; state.page = 0; draw(); }, 150);
  };
  var desc = el("input");
  desc.type = "checkbox";
  desc.checked = state.desc;
  desc.onchange = function () { state.desc = desc.checked; draw(); };
  var descLabel = el("label");
  descLabel.appendChild(desc);
  descLabel.appendChild(document.createTextNode(" descending"));
  controls.appendChild(search);
  controls.appendChild(el("span", " show "));
  controls.appendChild(select(filters, state.filter, function (v) { state.filter = v; state.page = 0; draw(); }));
  controls.appendChild(el("span", " sort by "));
  controls.appendChild(select(sorts, state.sort, function (v) { state.sort = v; draw(); }));
  controls.appendChild(descLabel);
  var table = el("table", null, "items"), head = el("tr");
  ["id", "verdict", "target", "answer", "response", "prompt"].forEach(function (h) { head.appendChild(el("th", h)); });
  var thead = el("thead");
  thead.appendChild(head);
  table.appendChild(thead);
  table.appendChild(body);
  app.appendChild(controls);
  app.appendChild(status);
  app.appendChild(table);
  app.appendChild(pager);
  draw();
})();
