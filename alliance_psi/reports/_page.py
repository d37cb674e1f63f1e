"""The fixed style and script of the HTML report, kept apart from the code that fills the page.

Both are constants: the page's Content-Security-Policy allows exactly these by their SHA-256,
so no other style or script can run in a report. The script only reads the static table; it
never fetches anything and never writes HTML (it toggles the ``hidden`` attribute and sets text).
"""

from __future__ import annotations

__all__ = ["SCRIPT", "STYLE"]

_SANS = (
    'system-ui,-apple-system,"Segoe UI","PingFang SC","Hiragino Sans GB","Microsoft YaHei",'
    '"Noto Sans CJK SC","Source Han Sans SC","WenQuanYi Micro Hei",sans-serif'
)
_MONO = 'ui-monospace,"SFMono-Regular",Menlo,Consolas,"Noto Sans Mono CJK SC","WenQuanYi Micro Hei Mono",monospace'

STYLE = (
    ":root{--ink:#101828;--muted:#667085;--line:#e4e7ec;--bg:#f4f6f9;--navy:#16325c}"
    "*{box-sizing:border-box}"
    f"body{{margin:0;background:var(--bg);color:var(--ink);font:14px/1.55 {_SANS}}}"
    ".top{background:var(--navy);color:#fff}"
    ".top .inner,main{max-width:1280px;margin:0 auto;padding:24px 32px}"
    ".eyebrow{font-size:12px;letter-spacing:.06em;opacity:.75}"
    "h1{margin:4px 0 14px;font-size:26px;font-weight:600}"
    ".meta{display:flex;flex-wrap:wrap;gap:8px 36px;margin:0}"
    ".meta dt{font-size:12px;opacity:.7}"
    f".meta dd{{margin:0;font-size:13px;font-family:{_MONO}}}"
    ".notice{margin:16px 0 0;padding:8px 12px;border-left:3px solid #f79009;background:rgba(255,255,255,.08);font-size:13px}"
    ".cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:16px;margin-bottom:16px}"
    ".card,.panel{background:#fff;border:1px solid var(--line);border-radius:8px}"
    ".card{padding:14px 18px}"
    ".card-value{font-size:28px;font-weight:600;color:var(--navy);font-variant-numeric:tabular-nums}"
    ".card-label{color:var(--muted);font-size:12px}"
    ".charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:16px;margin-bottom:16px}"
    ".panel{padding:16px 18px;margin:0}"
    "figcaption{font-weight:600;margin-bottom:10px}"
    ".chart{max-width:100%;height:auto;font-family:inherit}"
    ".empty{margin:8px 0}"
    ".toolbar{display:flex;align-items:center;gap:16px;margin-bottom:12px}"
    ".toolbar h2{font-size:16px;margin:0}"
    "#q{flex:1;max-width:440px;padding:7px 12px;border:1px solid #d0d5dd;border-radius:6px;font:inherit}"
    "#q:focus{outline:2px solid #84adeb;border-color:#2f6db5}"
    "table{width:100%;border-collapse:collapse}"
    "th{text-align:left;font-size:12px;font-weight:600;color:var(--muted);background:#f9fafb;"
    "border-bottom:1px solid var(--line);padding:8px 10px;white-space:nowrap}"
    "td{padding:9px 10px;border-bottom:1px solid var(--line);vertical-align:top}"
    "tbody tr:hover{background:#f8fafc}"
    "tr[hidden]{display:none}"
    ".num{text-align:right;font-variant-numeric:tabular-nums}"
    f".value{{font-family:{_MONO};white-space:nowrap}}"
    ".normalized{user-select:all}"
    ".value.long{white-space:normal;min-width:12em;overflow-wrap:anywhere}"
    f".code{{display:block;font-size:11px;color:var(--muted);font-family:{_MONO}}}"
    ".spelling{display:block;font-size:12px;color:var(--muted);white-space:normal;user-select:text}"
    ".holders,.sev{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;white-space:nowrap}"
    ".holders{min-width:30px;text-align:center}"
    ".hot,.sev-level1{background:#fee4e2;color:#b42318}"
    ".warm{background:#eaf1fb;color:#1d4f91}"
    ".sev{font-size:12px}.sev-level2{background:#fef0c7;color:#b54708}"
    ".peers{list-style:none;margin:0;padding:0}.peers li{margin:0 0 4px}"
    ".chip{display:inline-block;padding:0 8px;border-radius:4px;background:#f2f4f7;border:1px solid var(--line);font-size:12px}"
    ".peer-detail{display:block;margin:1px 0 0 2px;color:var(--muted);font-size:12px}"
    ".peers-cell{min-width:15em;overflow-wrap:anywhere}.scroll{overflow-x:auto}"
    "th .en{display:block;font-weight:400;font-size:11px}"
    ".muted{color:var(--muted)}.date{white-space:nowrap}.ref{white-space:nowrap}"
    "footer{color:var(--muted);font-size:12px;margin-top:16px}"
    "@media print{body{background:#fff}#q,#shown{display:none}.card,.panel{break-inside:avoid}}"
)

SCRIPT = """(function () {
  "use strict";
  var input = document.getElementById("q");
  var shown = document.getElementById("shown");
  var rows = Array.prototype.slice.call(document.querySelectorAll("#leads tbody tr:not(.none)"));
  function apply() {
    var terms = input.value.trim().toLowerCase().split(/\\s+/).filter(Boolean);
    var count = 0;
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var match = terms.every(function (term) { return text.indexOf(term) !== -1; });
      row.hidden = !match;
      if (match) { count += 1; }
    });
    shown.textContent = terms.length ? "显示 " + count + " / " + rows.length + " 条" : "共 " + rows.length + " 条";
  }
  function fromHash() {
    var found = /^#q=(.*)$/.exec(window.location.hash);
    if (found) {
      try { input.value = decodeURIComponent(found[1].replace(/\\+/g, " ")); } catch (e) { input.value = found[1]; }
    }
    apply();
  }
  input.addEventListener("input", apply);
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();"""
