// The queue and the alert view. The queue is read from the API and read again when the
// event stream says something changed (a new alert, a claim, a decision): no polling.
// Clocks (time since trigger, countdown to respond_by) tick in the page every second.
import { api, span, clock, el } from "/desk/assets/common.js";

const PATTERN_NAMES = {
  SEXTORTION: "sextortion",
  SEXUAL_SOLICITATION: "solicitation",
  GROOMING: "grooming",
  SELF_HARM_RISK: "self-harm risk",
  KNOWN_ABUSE_MATERIAL: "known abuse material",
};
const SOON_MS = 15 * 60 * 1000;

// `revealed`: the excerpts this moderator chose to see, kept unblurred across re-renders.
const state = { me: null, entries: [], selected: 0, open: null, revealed: new Set() };
const $ = (id) => document.getElementById(id);

function say(msg) {
  $("status").textContent = msg || "";
}

function filters() {
  const q = new URLSearchParams();
  const tenant = $("f-tenant").value.trim();
  if (tenant) q.set("tenant", tenant);
  if ($("f-priority").value) q.set("min_priority", $("f-priority").value);
  if ($("f-pattern").value) q.set("pattern", $("f-pattern").value);
  q.set("claimed", $("f-claimed").value);
  return q.toString();
}

/** The countdown cell's text and class for `respondBy` at `now`. */
function countdown(respondBy, now) {
  if (!respondBy) return ["—", "countdown"];
  const left = Date.parse(respondBy) - now;
  if (left <= 0) return ["passed", "countdown passed"];
  return [clock(left), left < SOON_MS ? "countdown soon" : "countdown"];
}

function tickClocks() {
  const now = Date.now();
  for (const row of $("rows").children) {
    const e = state.entries[Number(row.dataset.index)];
    if (!e) continue;
    row.querySelector(".age").textContent = span(now - Date.parse(e.alert.triggered_at));
    const [text, cls] = countdown(e.alert.respond_by, now);
    const cell = row.querySelector(".countdown");
    cell.textContent = text;
    cell.className = cls;
  }
}

function renderQueue() {
  const rows = $("rows");
  rows.replaceChildren();
  state.entries.forEach((e, i) => {
    const a = e.alert;
    const holder = e.claim ? (e.claim.moderator === state.me?.moderator ? "you" : e.claim.moderator) : "—";
    const row = el(
      "tr",
      { class: "alert-row", "data-id": a.alert_id, "data-index": String(i) },
      el("td", {}, el("span", { class: `badge ${a.priority}`, text: a.priority })),
      el("td", { text: PATTERN_NAMES[a.pattern] || a.pattern }),
      el("td", { text: a.tenant }),
      el("td", { class: "age" }),
      el("td", { class: "countdown" }),
      el("td", { class: "holder", text: holder }),
    );
    if (i === state.selected) row.classList.add("selected");
    row.addEventListener("click", () => {
      state.selected = i;
      openAlert(a.alert_id);
    });
    rows.append(row);
  });
  $("empty").hidden = state.entries.length > 0;
  tickClocks();
}

let loading = null;
/** Reads the queue again (coalescing bursts of changes into one read). */
function reload() {
  if (loading) return loading;
  loading = new Promise((resolve) => setTimeout(resolve, 50))
    .then(() => api(`/desk/api/open?${filters()}`))
    .then((data) => {
      const keep = state.entries[state.selected]?.alert.alert_id;
      state.entries = data.alerts;
      $("more").hidden = !data.more;
      const again = state.entries.findIndex((e) => e.alert.alert_id === keep);
      state.selected = again >= 0 ? again : Math.min(state.selected, Math.max(0, state.entries.length - 1));
      renderQueue();
    })
    .catch((err) => say(err.message))
    .finally(() => {
      loading = null;
    });
  return loading;
}

function list(items) {
  return el("ul", {}, ...items.map((t) => el("li", { text: t })));
}

function renderAlert(entry) {
  const a = entry.alert;
  const d = $("detail");
  const triggered = Date.parse(a.triggered_at);
  const first = Date.parse(a.first_contact_at);
  const facts = el("dl", { class: "facts" });
  const fact = (k, v) => facts.append(el("dt", { text: k }), el("dd", { text: v }));
  fact("Tenant", a.tenant);
  fact("Suspect", `${a.suspect.user_id} (${a.suspect.age_band})`);
  fact("Target", `${a.target.user_id} (${a.target.age_band})`);
  fact("First contact", a.first_contact_at);
  fact("Triggered", a.triggered_at);
  fact("Time to escalation", span(triggered - first));
  fact("Respond by", a.respond_by || "no deadline");
  if (a.known_offender) fact("Known to the target", a.known_offender.summary);
  fact("Claimed by", entry.claim ? `${entry.claim.moderator} until ${entry.claim.until}` : "nobody");
  if (entry.decided) fact("Decided", `${entry.decided.decision} by ${entry.decided.moderator}`);

  const signals = a.signals.map((s) => `${s.category} · ${s.side.toLowerCase()} ×${s.count}${s.slots?.length ? ` (${s.slots.join(", ")})` : ""}`);
  const timeline = el("ol", { class: "timeline" });
  for (const e of [...a.evidence].sort((x, y) => Date.parse(x.sent_at) - Date.parse(y.sent_at))) {
    const key = `${a.alert_id}/${e.event_id}`;
    const blurred = state.revealed.has(key) ? "" : " blurred";
    const excerpt = el("span", { class: `excerpt${blurred}`, tabindex: "0", title: "Click to show", text: e.excerpt });
    const reveal = () => {
      state.revealed.add(key);
      excerpt.classList.remove("blurred");
    };
    excerpt.addEventListener("click", reveal);
    excerpt.addEventListener("keydown", (k) => k.key === "Enter" && reveal());
    timeline.append(
      el(
        "li",
        {},
        el("div", { class: "when", text: `${e.sent_at} · ${e.sender_id === a.suspect.user_id ? "suspect" : "target"} · ${e.event_id}` }),
        excerpt,
        el("div", { class: "hash", text: `sha256 ${e.sha256}` }),
      ),
    );
  }
  const reason = el("input", { id: "reason", placeholder: "reason code", maxlength: "32", size: "14" });
  const button = (id, text, fn, primary) => {
    const b = el("button", { id, type: "button", class: primary ? "primary" : "", text });
    b.addEventListener("click", fn);
    return b;
  };
  const actions = el(
    "div",
    { class: "actions" },
    button("claim", "Claim (c)", () => claim(false), true),
    button("release", "Release (r)", () => claim(true)),
    button("resolve-confirmed", "Confirmed (1)", () => resolve("confirmed")),
    button("resolve-false_positive", "False positive (2)", () => resolve("false_positive")),
    button("resolve-escalated", "Escalated (3)", () => resolve("escalated")),
    reason,
    el("a", { id: "package", href: `/desk/api/alerts/${a.alert_id}/package`, download: "", text: "Evidence package (d)" }),
  );
  const flags = el("p", { class: "flags" }, ...(a.red_flags || []).map((f) => el("span", { text: f })));
  d.replaceChildren(
    el("h2", {}, el("span", { class: `badge ${a.priority}`, text: a.priority }), ` ${PATTERN_NAMES[a.pattern] || a.pattern}`),
    flags,
    facts,
    actions,
    el("div", { class: "sidebyside" },
      el("div", {}, el("h3", { text: "Rules" }), list(a.rules)),
      el("div", {}, el("h3", { text: "Signals" }), list(signals))),
    el("h3", { text: "Evidence (click an excerpt to show it)" }),
    timeline,
    el("h3", { text: `What the target sees (${a.victim_notice?.language || "—"})` }),
    el("div", { class: "notice", text: a.victim_notice?.text || "No notice." }),
    el("h3", { text: "Recommended actions" }),
    list(a.recommended_actions || []),
  );
  d.hidden = false;
}

/** Shows alert `id`; a refresh (the desk changed) keeps the last message shown. */
async function openAlert(id, refresh = false) {
  try {
    state.open = id;
    if (!refresh) {
      say("");
      renderQueue();
    }
    renderAlert(await api(`/desk/api/alerts/${encodeURIComponent(id)}`));
  } catch (err) {
    say(err.message);
  }
}

function closeAlert() {
  state.open = null;
  $("detail").hidden = true;
}

function current() {
  return state.open || state.entries[state.selected]?.alert.alert_id;
}

async function claim(release) {
  const id = current();
  if (!id) return;
  try {
    await api(`/desk/api/alerts/${encodeURIComponent(id)}/claim`, { method: "POST", body: { release } });
    say(release ? "Released." : "Claimed.");
    await reload();
    if (state.open) openAlert(state.open, true);
  } catch (err) {
    say(err.message);
  }
}

async function resolve(decision) {
  const id = current();
  if (!id) return;
  try {
    const reason_code = ($("reason")?.value || "").trim();
    await api(`/desk/api/alerts/${encodeURIComponent(id)}/resolve`, { method: "POST", body: { decision, reason_code } });
    say(`Resolved: ${decision.replace("_", " ")}.`);
    closeAlert();
    await reload();
  } catch (err) {
    say(err.message);
  }
}

function move(by) {
  if (!state.entries.length) return;
  state.selected = Math.max(0, Math.min(state.entries.length - 1, state.selected + by));
  renderQueue();
  if (state.open) openAlert(state.entries[state.selected].alert.alert_id);
}

document.addEventListener("keydown", (e) => {
  if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  const keys = {
    j: () => move(1),
    ArrowDown: () => move(1),
    k: () => move(-1),
    ArrowUp: () => move(-1),
    Enter: () => state.entries[state.selected] && openAlert(state.entries[state.selected].alert.alert_id),
    o: () => state.entries[state.selected] && openAlert(state.entries[state.selected].alert.alert_id),
    c: () => claim(false),
    r: () => claim(true),
    1: () => resolve("confirmed"),
    2: () => resolve("false_positive"),
    3: () => resolve("escalated"),
    d: () => current() && $("package")?.click(),
    Escape: closeAlert,
    "/": () => $("f-tenant").focus(),
  };
  const act = keys[e.key];
  if (act) {
    e.preventDefault();
    act();
  }
});

for (const id of ["f-tenant", "f-priority", "f-pattern", "f-claimed"]) {
  $(id).addEventListener("change", reload);
}
$("filters").addEventListener("submit", (e) => {
  e.preventDefault();
  reload();
});
$("logout").addEventListener("click", async () => {
  await api("/desk/api/logout", { method: "POST" }).catch(() => {});
  location.assign("/desk/login");
});

async function start() {
  try {
    state.me = await api("/desk/api/me");
    $("me").textContent = `${state.me.moderator} · tenants: ${state.me.tenants.join(", ")}`;
  } catch (err) {
    say(err.message);
    return;
  }
  await reload();
  const events = new EventSource("/desk/api/events");
  events.addEventListener("alert", reload);
  events.addEventListener("desk", () => {
    reload();
    if (state.open) openAlert(state.open, true);
  });
  events.addEventListener("open", reload);
  setInterval(tickClocks, 1000);
}

start();
