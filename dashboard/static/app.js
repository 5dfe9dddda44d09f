// The dashboard's little JavaScript: the write token, decisions, keyboard shortcuts, queue
// selection. Pages work for reading without it; writes go through fetch() with the token in
// an Authorization header (never a cookie), so another site cannot forge them.

const TOKEN_KEY = "assetfactory-dashboard-token";
const REVIEWER_KEY = "assetfactory-reviewer";

function reviewer() {
  const el = document.getElementById("reviewer");
  return (el && el.value.trim()) || localStorage.getItem(REVIEWER_KEY) || "";
}

function reviewerField() {
  const el = document.getElementById("reviewer");
  if (!el) return;
  el.value = localStorage.getItem(REVIEWER_KEY) || el.dataset.default || "";
  el.addEventListener("change", () => localStorage.setItem(REVIEWER_KEY, el.value.trim()));
}

function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const t = url.searchParams.get("token");
  if (t) {
    localStorage.setItem(TOKEN_KEY, t);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + (url.search || "") + url.hash);
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

async function checkToken() {
  const box = document.getElementById("token-state");
  if (!box) return;
  box.hidden = false;
  let ok = false;
  if (token()) {
    const r = await fetch("/api/whoami", { headers: { Authorization: "Bearer " + token() } });
    ok = r.ok;
  }
  box.classList.toggle("ok", ok);
  box.querySelector(".tok-ok").hidden = !ok;
  box.querySelector(".tok-form").hidden = ok;
}

function toast(msg, bad = false) {
  const t = document.getElementById("toast");
  t.textContent = msg;
  t.className = bad ? "bad" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + token() },
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 409 && data && data.refused) {
    throw new Error("refused: " + data.refused.map((x) => x.reason).join("; "));
  }
  if (!r.ok) {
    const why = (data && data.detail) || r.statusText;
    throw new Error(r.status === 401 ? "refused: " + why : why);
  }
  return data;
}

function parseOverrides(text) {
  const out = [];
  for (const line of (text || "").split(/\n|;/)) {
    const s = line.trim();
    if (s) out.push(s);
  }
  return out;
}

function askRework(what) {
  // Resolves to {overrides, note, start} or null when cancelled.
  const dlg = document.getElementById("rework");
  const form = document.getElementById("rework-form");
  document.getElementById("rework-what").textContent = what;
  return new Promise((resolve) => {
    dlg.addEventListener("close", function onClose() {
      dlg.removeEventListener("close", onClose);
      if (dlg.returnValue !== "ok") return resolve(null);
      resolve({
        overrides: parseOverrides(form.overrides.value),
        note: form.note.value,
        start: form.start.checked,
      });
    });
    dlg.returnValue = "";
    dlg.showModal();
  });
}

async function decide(skus, decision, extra = {}) {
  if (!skus.length) { toast("select at least one asset", true); return null; }
  let body = { skus, decision, reviewer: reviewer(), ...extra };
  if (decision === "rework") {
    const r = await askRework(skus.length === 1 ? skus[0] : skus.length + " assets");
    if (!r) return null;
    body = { ...body, overrides: r.overrides, note: r.note, start_reprocess: r.start };
  }
  try {
    const res = await post("/api/decisions", body);
    const refused = (res.refused || []).map((r) => r.reason).join("; ");
    toast(`${decision}: ${res.recorded} recorded` +
          (res.reprocess ? ` · reprocess job ${res.reprocess.id} started` : "") +
          (refused ? ` · refused: ${refused}` : ""), !!refused);
    return res;
  } catch (e) {
    toast(e.message, true);
    return null;
  }
}

// ---------------------------------------------------------------- asset page

function assetPage() {
  const el = document.getElementById("asset");
  if (!el) return;
  const sku = el.dataset.sku;
  const attempt = el.dataset.attempt;
  const pos = el.dataset.pos;
  const qs = el.dataset.qs || "";

  const mv = document.getElementById("mv");
  const state = document.getElementById("mv-state");
  if (mv && state) {
    mv.addEventListener("load", () => { state.textContent = "model loaded"; mv.dataset.loaded = "1"; });
    mv.addEventListener("error", (e) => {
      state.textContent = "model failed to load";
      mv.dataset.loaded = "error";
      console.error("model-viewer error", e.detail);
    });
  }

  const go = (p) => { window.location.href = `/queue/at?pos=${Math.max(0, p)}&${qs}`; };

  async function act(decision) {
    const res = await decide([sku], decision, { attempt_ids: [attempt] });
    if (!res || !res.recorded) return;
    const chip = document.getElementById("decision-chip");
    if (chip) { chip.hidden = false; chip.textContent = decision; chip.className = "chip d-" + decision; }
    document.body.dataset.decided = decision;
    // In the attention queue a decided asset drops out: the next one now sits at `pos`.
    if (pos !== undefined) setTimeout(() => go(qs.includes("all=1") ? +pos + 1 : +pos), 600);
  }

  for (const b of document.querySelectorAll("[data-decide]")) {
    b.addEventListener("click", () => act(b.dataset.decide));
  }
  const full = document.getElementById("full-report");
  if (full) {
    full.addEventListener("click", async () => {
      const pre = document.getElementById("report");
      pre.hidden = false;
      pre.textContent = "running the validators…";
      const r = await fetch(full.dataset.url);
      pre.textContent = r.ok ? JSON.stringify(await r.json(), null, 1) : "failed: " + r.status;
    });
  }
  keys({
    a: () => act("approve"), r: () => act("reject"), w: () => act("rework"),
    j: () => pos !== undefined && go(+pos + 1), n: () => pos !== undefined && go(+pos + 1),
    k: () => pos !== undefined && go(+pos - 1), p: () => pos !== undefined && go(+pos - 1),
  });
}

// ---------------------------------------------------------------- queue page

function missingPosters() {
  // a poster the catalog names but storage lacks: say so instead of a broken image
  for (const img of document.querySelectorAll("#cards .card img")) {
    const swap = () => {
      const div = document.createElement("div");
      div.className = "noposter";
      div.textContent = "poster file missing";
      img.replaceWith(div);
    };
    if (img.complete && img.naturalWidth === 0) swap();
    else img.addEventListener("error", swap);
  }
}

function queuePage() {
  const cards = [...document.querySelectorAll("#cards .card")];
  if (!document.getElementById("cards")) return;
  missingPosters();
  let focus = cards.length ? 0 : -1;
  const count = document.getElementById("selcount");

  const selected = () => [...document.querySelectorAll("#cards .sel:checked")].map((c) => c.value);
  const refresh = () => {
    count.textContent = `${selected().length} selected`;
    cards.forEach((c, i) => c.classList.toggle("focus", i === focus));
  };
  const target = () => {
    const s = selected();
    if (s.length) return s;
    return focus >= 0 ? [cards[focus].dataset.sku] : [];
  };
  async function act(decision) {
    const skus = target();
    const res = await decide(skus, decision);
    if (!res) return;
    const refused = new Set((res.refused || []).map((r) => r.sku));
    for (const c of cards) {
      if (skus.includes(c.dataset.sku) && !refused.has(c.dataset.sku)) {
        c.classList.add("decided", "d-" + decision);
        const sel = c.querySelector(".sel");
        sel.checked = false;
        let chip = c.querySelector(".badges .chip.decided-now");
        if (!chip) {
          chip = document.createElement("span");
          c.querySelector(".badges").append(chip);
        }
        chip.className = "chip decided-now d-" + decision;
        chip.textContent = decision;
      }
    }
    refresh();
  }

  document.getElementById("select-all").addEventListener("change", (e) => {
    for (const c of document.querySelectorAll("#cards .sel")) c.checked = e.target.checked;
    refresh();
  });
  for (const c of document.querySelectorAll("#cards .sel")) c.addEventListener("change", refresh);
  for (const b of document.querySelectorAll("[data-decide]")) {
    b.addEventListener("click", () => act(b.dataset.decide));
  }
  const add = document.getElementById("add-range");
  if (add) {
    add.addEventListener("click", () => {
      const last = [...document.querySelectorAll(".ranges .range")].pop();
      const copy = last.cloneNode(true);
      for (const i of copy.querySelectorAll("input")) i.value = "";
      copy.querySelector("select").value = "";
      last.after(copy);
    });
  }
  const move = (d) => {
    if (!cards.length) return;
    focus = Math.min(cards.length - 1, Math.max(0, focus + d));
    refresh();
    cards[focus].scrollIntoView({ block: "nearest" });
  };
  keys({
    j: () => move(1), n: () => move(1), k: () => move(-1), p: () => move(-1),
    x: () => { if (focus >= 0) { const s = cards[focus].querySelector(".sel"); s.checked = !s.checked; refresh(); } },
    o: () => focus >= 0 && cards[focus].querySelector("a.open").click(),
    Enter: () => focus >= 0 && cards[focus].querySelector("a.open").click(),
    a: () => act("approve"), r: () => act("reject"), w: () => act("rework"),
  });
  refresh();
}

// ---------------------------------------------------------------- shared

function keys(map) {
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable)) return;
    if (document.querySelector("dialog[open]")) return;
    if (e.key === "?") { document.getElementById("help").showModal(); return; }
    const f = map[e.key];
    if (f) { e.preventDefault(); f(); }
  });
}

function tokenForm() {
  const form = document.getElementById("token-form");
  if (!form) return;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const v = document.getElementById("token-input").value.trim();
    if (v) localStorage.setItem(TOKEN_KEY, v);
    checkToken();
  });
}

takeTokenFromUrl();
reviewerField();
tokenForm();
checkToken();
assetPage();
queuePage();
