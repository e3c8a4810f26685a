--- aviary.report: self-contained HTML reports (one file: images inlined as base64 PNG, styles and
-- scripts inline), readable on a laptop screen. Used by recipes/evaluate.lua (report.html),
-- recipes/compare.lua and the notebook renderer.
--
--   local report = require "aviary.report"
--   local doc = report.Document("Evaluation of resnet18")
--   doc:section("Metrics"); doc:cards({{"top-1", "81.2%"}, {"macro F1", "0.80"}})
--   doc:image("plots/curves.png", {caption = "..."}); doc:table({"class", "F1"}, rows, {sortable = true})
--   doc:save("report.html")
local report = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local ENC = {}
for i = 0, 63 do ENC[i] = B64:sub(i + 1, i + 1) end
-- all 4096 pairs of base64 digits for 12-bit groups: two table lookups per 3 bytes
local PAIR = {}
for i = 0, 4095 do PAIR[i] = ENC[i >> 6] .. ENC[i & 63] end

--- report.base64(bytes) -> the standard base64 encoding (RFC 4648, with padding)
function report.base64(s)
  local out, n = {}, #s
  local full = n - n % 3
  local byte = string.byte
  local k = 0
  for i = 1, full, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = (a << 16) | (b << 8) | c
    k = k + 1
    out[k] = PAIR[v >> 12] .. PAIR[v & 4095]
  end
  local rest = n - full
  if rest == 1 then
    local v = byte(s, n) << 16
    out[k + 1] = ENC[v >> 18] .. ENC[(v >> 12) & 63] .. "=="
  elseif rest == 2 then
    local a, b = byte(s, n - 1, n)
    local v = (a << 16) | (b << 8)
    out[k + 1] = ENC[v >> 18] .. ENC[(v >> 12) & 63] .. ENC[(v >> 6) & 63] .. "="
  end
  return table.concat(out)
end

--- report.escape(text) -> text with & < > " ' escaped for HTML
function report.escape(s)
  return (tostring(s):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
                                       ["'"] = "&#39;"}))
end
local esc = report.escape

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then error(("report: cannot read '%s': %s"):format(path, tostring(err)), 3) end
  local s = f:read("a")
  f:close()
  return s
end

--- report.data_uri(png_bytes_or_path) -> "data:image/png;base64,..." (a string starting with the PNG
-- signature is taken as the bytes, anything else as a file path)
function report.data_uri(x)
  local bytes = x
  if x:sub(1, 8) ~= "\137PNG\r\n\26\n" then bytes = read_file(x) end
  if bytes:sub(1, 8) ~= "\137PNG\r\n\26\n" then error("report.data_uri: not a PNG image", 2) end
  return "data:image/png;base64," .. report.base64(bytes)
end

local STYLE = [[
:root { --fg: #1d2330; --muted: #5b6577; --line: #dde2ea; --bg: #ffffff; --card: #f5f7fa; --accent: #1f6feb; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 "DejaVu Sans", system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { background: #16202e; color: #fff; padding: 18px 28px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #c5cfdc; font-size: 13px; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line); padding: 6px 28px; z-index: 5;
      white-space: nowrap; overflow-x: auto; font-size: 13px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
main { max-width: 1240px; margin: 0 auto; padding: 10px 28px 60px; }
section { margin-top: 26px; }
h2 { font-size: 19px; border-bottom: 1px solid var(--line); padding-bottom: 4px; margin: 0 0 12px; }
h3 { font-size: 16px; margin: 18px 0 8px; }
figure { margin: 12px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; display: block; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; max-width: 900px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px; min-width: 140px; }
.card .v { font-size: 22px; font-weight: bold; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right; }
th { background: var(--card); position: sticky; top: 34px; cursor: default; }
th.sortable { cursor: pointer; }
td:first-child, th:first-child, td.l, th.l { text-align: left; }
.scroll { max-height: 520px; overflow: auto; border: 1px solid var(--line); border-radius: 4px; display: inline-block; }
.scroll th { top: 0; }
pre { background: var(--card); border: 1px solid var(--line); border-radius: 4px; padding: 10px 12px; overflow-x: auto;
      font-size: 12.5px; line-height: 1.4; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 10px 24px; }
.hover { position: relative; display: inline-block; max-width: 100%; }
.tip { position: absolute; pointer-events: none; background: rgba(20, 26, 36, .92); color: #fff; font-size: 12px;
       padding: 4px 8px; border-radius: 4px; white-space: nowrap; display: none; z-index: 4; }
.bad { color: #b42318; } .good { color: #067647; }
p.note { color: var(--muted); font-size: 13px; }
]]

-- table sorting and the confusion-matrix tooltip; every handler checks what it touches
local SCRIPT = [[
(function () {
  document.querySelectorAll('table.sortable').forEach(function (t) {
    t.querySelectorAll('th').forEach(function (th, col) {
      th.classList.add('sortable');
      th.title = 'sort';
      th.addEventListener('click', function () {
        var body = t.tBodies[0]; if (!body) return;
        var rows = Array.prototype.slice.call(body.rows);
        var dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
        rows.sort(function (a, b) {
          var x = a.cells[col].dataset.v !== undefined ? a.cells[col].dataset.v : a.cells[col].textContent;
          var y = b.cells[col].dataset.v !== undefined ? b.cells[col].dataset.v : b.cells[col].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          if (!isNaN(nx) && !isNaN(ny)) return dir * (nx - ny);
          return dir * String(x).localeCompare(String(y));
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.querySelectorAll('.hover[data-matrix]').forEach(function (box) {
    var img = box.querySelector('img'), tip = box.querySelector('.tip');
    var src = document.getElementById(box.dataset.matrix);
    if (!img || !tip || !src) return;
    var d = JSON.parse(src.textContent);
    img.addEventListener('mousemove', function (e) {
      var r = img.getBoundingClientRect();
      if (!img.naturalWidth || !r.width) return;
      var px = (e.clientX - r.left) * img.naturalWidth / r.width, py = (e.clientY - r.top) * img.naturalHeight / r.height;
      var n = d.names.length, b = d.box;
      var j = Math.floor((px - b[0]) / b[2] * n), i = Math.floor((py - b[1]) / b[3] * n);
      if (i < 0 || j < 0 || i >= n || j >= n) { tip.style.display = 'none'; return; }
      var c = d.counts[i][j], s = d.support[i];
      tip.textContent = 'true: ' + d.names[i] + '  \u2192  predicted: ' + d.names[j] + '  \u2014  ' + c + ' of ' + s +
        (s ? ' (' + (100 * c / s).toFixed(1) + '%)' : '');
      tip.style.display = 'block';
      tip.style.left = Math.min(e.clientX - r.left + 14, r.width - 10) + 'px';
      tip.style.top = (e.clientY - r.top + 14) + 'px';
    });
    img.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  });
})();
]]

local Document = {}
Document.__index = Document

--- report.Document(title, {subtitle=}) -> a document; add parts in order, then :render() or :save(path)
function report.Document(title, opts)
  opts = opts or {}
  return setmetatable({title = title, subtitle = opts.subtitle, parts = {}, toc = {}, ids = 0}, Document)
end

function Document:_id(prefix)
  self.ids = self.ids + 1
  return prefix .. self.ids
end

--- doc:section(title) -- a new section (listed in the navigation bar)
function Document:section(title)
  local id = self:_id("s")
  if self.open then self.parts[#self.parts + 1] = "</section>" end
  self.parts[#self.parts + 1] = ('<section id="%s"><h2>%s</h2>'):format(id, esc(title))
  self.toc[#self.toc + 1] = {id, title}
  self.open = true
  return self
end

--- doc:heading(text) -- a sub-heading
function Document:heading(text) self.parts[#self.parts + 1] = "<h3>" .. esc(text) .. "</h3>"; return self end
--- doc:text(text [, class]) -- a paragraph (escaped)
function Document:text(text, class)
  self.parts[#self.parts + 1] = ("<p%s>%s</p>"):format(class and (' class="' .. class .. '"') or "", esc(text))
  return self
end
--- doc:html(html) -- raw HTML
function Document:html(html) self.parts[#self.parts + 1] = html; return self end
--- doc:pre(text) -- preformatted text
function Document:pre(text) self.parts[#self.parts + 1] = "<pre>" .. esc(text) .. "</pre>"; return self end

--- doc:cards({{label, value [, class]}, ...}) -- a row of headline numbers
function Document:cards(list)
  local h = {'<div class="cards">'}
  for _, c in ipairs(list) do
    h[#h + 1] = ('<div class="card"><div class="k">%s</div><div class="v%s">%s</div></div>'):format(esc(c[1]),
      c[3] and (" " .. c[3]) or "", esc(c[2]))
  end
  h[#h + 1] = "</div>"
  self.parts[#self.parts + 1] = table.concat(h)
  return self
end

--- doc:image(png_path_or_bytes, {alt=, caption=, width=, matrix={names=, counts=, box={x, y, w, h}}})
-- an inlined PNG figure; `matrix` adds a tooltip naming the cell under the pointer (confusion matrices)
function Document:image(src, opts)
  opts = opts or {}
  local uri = report.data_uri(src)
  local alt = esc(opts.alt or opts.caption or "figure")
  local style = opts.width and (' style="width:%dpx"'):format(opts.width) or ""
  local img = ('<img alt="%s" src="%s"%s>'):format(alt, uri, style)
  if opts.matrix then
    local json = require "aviary.json"
    local id = self:_id("m")
    local support = {}
    for i, row in ipairs(opts.matrix.counts) do
      local s = 0
      for _, v in ipairs(row) do s = s + v end
      support[i] = s
    end
    local data = json.encode({names = opts.matrix.names, counts = opts.matrix.counts, support = support,
                              box = opts.matrix.box})
    img = ('<script type="application/json" id="%s">%s</script><div class="hover" data-matrix="%s">%s<div class="tip"></div></div>')
      :format(id, data:gsub("</", "<\\/"), id, img)
  end
  self.parts[#self.parts + 1] = ("<figure>%s%s</figure>"):format(img,
    opts.caption and ("<figcaption>" .. esc(opts.caption) .. "</figcaption>") or "")
  return self
end

--- doc:grid(fn) -- lays out what fn adds (usually two images) side by side where the screen is wide enough
function Document:grid(fn)
  self.parts[#self.parts + 1] = '<div class="grid2">'
  fn(self)
  self.parts[#self.parts + 1] = "</div>"
  return self
end

--- doc:table(headers, rows, {sortable=false, scroll=false, align={...}}) -- cells are strings/numbers, or
-- {text, value=, class=} (value sorts, class styles)
function Document:table(headers, rows, opts)
  opts = opts or {}
  local h = {}
  if opts.scroll then h[#h + 1] = '<div class="scroll">' end
  h[#h + 1] = ("<table%s><thead><tr>"):format(opts.sortable and ' class="sortable"' or "")
  for _, x in ipairs(headers) do h[#h + 1] = "<th>" .. esc(x) .. "</th>" end
  h[#h + 1] = "</tr></thead><tbody>"
  for _, row in ipairs(rows) do
    h[#h + 1] = "<tr>"
    for _, cell in ipairs(row) do
      if type(cell) == "table" then
        h[#h + 1] = ("<td%s%s>%s</td>"):format(cell.value ~= nil and (' data-v="' .. esc(cell.value) .. '"') or "",
          cell.class and (' class="' .. cell.class .. '"') or "", esc(cell[1]))
      else
        h[#h + 1] = "<td>" .. esc(cell) .. "</td>"
      end
    end
    h[#h + 1] = "</tr>"
  end
  h[#h + 1] = "</tbody></table>"
  if opts.scroll then h[#h + 1] = "</div>" end
  self.parts[#self.parts + 1] = table.concat(h)
  return self
end

--- doc:render() -> the HTML text
function Document:render()
  local out = {"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    "<title>" .. esc(self.title) .. "</title><style>" .. STYLE .. "</style></head><body>",
    "<header><h1>" .. esc(self.title) .. "</h1>" .. (self.subtitle and ("<p>" .. esc(self.subtitle) .. "</p>") or "")
      .. "</header>"}
  if #self.toc > 1 then
    local nav = {"<nav>"}
    for _, t in ipairs(self.toc) do nav[#nav + 1] = ('<a href="#%s">%s</a>'):format(t[1], esc(t[2])) end
    nav[#nav + 1] = "</nav>"
    out[#out + 1] = table.concat(nav)
  end
  out[#out + 1] = "<main>"
  for _, p in ipairs(self.parts) do out[#out + 1] = p end
  if self.open then out[#out + 1] = "</section>" end
  out[#out + 1] = "</main><script>" .. SCRIPT .. "</script></body></html>\n"
  return table.concat(out, "\n")
end

--- doc:save(path) -- writes the HTML atomically (temporary name, then rename); returns path
function Document:save(path)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error(("report: cannot write '%s': %s"):format(path, tostring(err)), 2) end
  f:write(self:render())
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then os.remove(tmp); error(("report: cannot write '%s': %s"):format(path, tostring(rerr)), 2) end
  return path
end

return report
