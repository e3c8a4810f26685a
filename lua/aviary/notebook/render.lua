--- aviary.notebook.render: a run's cells and outputs as a Jupyter notebook (nbformat 4.5) and as one
-- self-contained HTML page (aviary.report's Document, images inlined).
local json = require "aviary.json"
local report = require "aviary.report"
local markdown = require "aviary.notebook.markdown"

local M = {}

local function array(t) return setmetatable(t or {}, json.array_mt) end
-- aviary.json has no null outside arrays: a marker string, replaced after encoding
local NULL = "\0null\0"

-- nbformat's multiline strings: a list of lines, each but the last ending in "\n"
local function lines(s)
  local out = array()
  for l in s:gmatch("[^\n]*\n?") do if l ~= "" then out[#out + 1] = l end end
  return out
end

local function mime_data(b)
  local d = {["text/plain"] = lines(b.text or "")}
  if b.png then d["image/png"] = report.base64(b.png) end
  if b.jpeg then d["image/jpeg"] = report.base64(b.jpeg) end
  if b.html then d["text/html"] = lines(b.html) end
  if b.markdown then d["text/markdown"] = lines(b.markdown) end
  local meta = {}
  if b.width and (b.png or b.jpeg) then meta[b.png and "image/png" or "image/jpeg"] = {width = b.width} end
  if b.caption then meta.caption = b.caption end
  return d, meta
end

local function ipynb_outputs(cell)
  local out = array()
  for _, o in ipairs(cell.outputs or {}) do
    if o.kind == "stream" then
      out[#out + 1] = {output_type = "stream", name = o.name, text = lines(o.text)}
    elseif o.kind == "display" or o.kind == "result" then
      local data, meta = mime_data(o.bundle)
      if o.kind == "result" then
        out[#out + 1] = {output_type = "execute_result", execution_count = cell.count, data = data, metadata = meta}
      else
        out[#out + 1] = {output_type = "display_data", data = data, metadata = meta}
      end
      -- Jupyter shows one representation of an output, so a caption under an image needs an output of its own
      if o.bundle.caption and (o.bundle.png or o.bundle.jpeg) then
        out[#out + 1] = {output_type = "display_data", data = {["text/markdown"] = lines("*" .. o.bundle.caption .. "*"),
          ["text/plain"] = lines(o.bundle.caption)}, metadata = {}}
      end
    elseif o.kind == "error" then
      local tb = array({o.ename .. ": " .. o.evalue})
      for l in o.traceback:gmatch("[^\n]+") do if l ~= o.evalue then tb[#tb + 1] = l end end
      out[#out + 1] = {output_type = "error", ename = o.ename, evalue = o.evalue, traceback = tb}
    end
  end
  return out
end

--- M.ipynb(run) -> the notebook's JSON text. run: {cells, name, path, quick, started, seconds, ok}
function M.ipynb(run)
  local cells = array()
  for i, c in ipairs(run.cells) do
    local id = ("cell-%d"):format(i)
    if c.type == "markdown" then
      cells[#cells + 1] = {cell_type = "markdown", id = id, metadata = {}, source = lines(c.source)}
    else
      cells[#cells + 1] = {cell_type = "code", id = id, execution_count = c.count or NULL,
        metadata = {aviary = {line = c.line, seconds = c.seconds}}, outputs = ipynb_outputs(c), source = lines(c.source)}
    end
  end
  return json.encode({
    nbformat = 4, nbformat_minor = 5, cells = cells,
    metadata = {
      kernelspec = {name = "aviary", display_name = "aviary (Lua 5.4)", language = "lua"},
      language_info = {name = "lua", version = "5.4", file_extension = ".lua", mimetype = "text/x-lua",
                       codemirror_mode = "lua"},
      aviary = {source = run.path, run_date = os.date("!%Y-%m-%dT%H:%M:%SZ", run.started), seconds = run.seconds,
                quick = run.quick and true or false, ok = run.ok and true or false},
    },
  }, {indent = true}):gsub('"\\u0000null\\u0000"', "null") .. "\n"
end

-- ---- HTML ------------------------------------------------------------------

local STYLE = [[
<style>
main { max-width: 1120px; }
.prose { font-size: 15.5px; line-height: 1.6; max-width: 900px; margin-left: 58px; }
section > h2 { margin-left: 58px; }
.prose h1 { font-size: 24px; margin: 26px 0 10px; }
.prose h3 { margin-top: 22px; }
.prose code, .out code { background: #eef1f5; border-radius: 3px; padding: 1px 4px; font-size: 13.5px; }
.prose p code, .prose li code { white-space: nowrap; }
.prose blockquote { margin: 10px 0; padding: 2px 14px; border-left: 3px solid #c9d3e0; color: var(--muted); }
.prose img { max-width: 100%; }
.prose table.md th, .prose table.md td { text-align: left; }
.cell { display: grid; grid-template-columns: 58px minmax(0, 1fr); margin: 14px 0; }
.cell .gut { color: #8a94a6; font: 12px/1.4 "DejaVu Sans Mono", monospace; padding-top: 10px; text-align: right; padding-right: 8px; }
.src { margin: 0; background: #f6f8fa; border: 1px solid var(--line); border-left: 3px solid #9fb3c8; border-radius: 4px;
       padding: 8px 12px; font: 13px/1.45 "DejaVu Sans Mono", Menlo, Consolas, monospace; overflow-x: auto; }
pre.code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; }
.meta { color: #8a94a6; font-size: 11.5px; text-align: right; margin-top: 2px; }
.k { color: #a626a4; font-weight: 600; } .s { color: #50a14f; } .c { color: #8a94a6; font-style: italic; }
.src .n, pre.code .n { color: #c2410c; } .b { color: #1f6feb; }
.cell.failed .src { border-left-color: #d92d20; }
.cell.unrun .src { opacity: .6; }
pre { tab-size: 4; }
.outs { margin-top: 2px; }
.out { margin: 6px 0 0; }
pre.stream { margin: 6px 0 0; background: #fff; border: none; border-left: 3px solid #e3e8ef; border-radius: 0;
             padding: 4px 12px; font: 12.5px/1.45 "DejaVu Sans Mono", monospace; max-height: 460px; overflow: auto; }
pre.stderr { background: #fffaf0; border-left-color: #f0c36d; color: #6b4e16; }
pre.result { border-left-color: #9fb3c8; }
pre.error { background: #fff1f0; border: 1px solid #f3b4ae; border-left: 3px solid #d92d20; color: #7a1f17; }
.out img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; display: block; }
.out figure { margin: 8px 0; }
table.records td.num { font-variant-numeric: tabular-nums; }
table.records .l { text-align: left; } table.records .num { text-align: right; }
.caption { color: var(--muted); font-size: 13px; margin: 4px 0 0; }
.banner { border-radius: 6px; padding: 10px 14px; margin: 16px 0 0 58px; font-size: 14px; }
.banner.quick { background: #eef4ff; border: 1px solid #c6d8fb; }
.banner.failed { background: #fff1f0; border: 1px solid #f3b4ae; color: #7a1f17; }
.pager { display: flex; justify-content: space-between; margin: 36px 0 0 58px; font-size: 14px; }
.pager a { color: var(--accent); text-decoration: none; }
footer { color: var(--muted); font-size: 12.5px; border-top: 1px solid var(--line); margin: 40px 0 0 58px; padding-top: 10px; }
</style>
]]

local esc = report.escape

local function uri(mime, bytes) return ("data:%s;base64,%s"):format(mime, report.base64(bytes)) end

local function figure(b)
  local style = b.width and (' style="width:%dpx"'):format(b.width) or ""
  local w = b.png and require("aviary.notebook.display").png_size(b.png)
  if not b.width and w and w < 128 then
    -- a tiny image (a 32 x 32 input, a 7 x 7 feature map) is scaled up in whole steps, its pixels kept sharp
    style = (' style="width:%dpx; image-rendering: pixelated"'):format(w * math.max(2, 160 // w))
  end
  local src = b.png and uri("image/png", b.png) or uri("image/jpeg", b.jpeg)
  return ('<figure><img alt="%s" src="%s"%s>%s</figure>'):format(esc(b.caption or b.text or "image"), src, style,
    b.caption and ("<figcaption>" .. esc(b.caption) .. "</figcaption>") or "")
end

local function bundle_html(b, is_result)
  if b.png or b.jpeg then return figure(b) end
  if b.html then return '<div class="out">' .. b.html .. "</div>" end
  if b.markdown then return '<div class="out prose">' .. markdown.to_html(b.markdown) .. "</div>" end
  return ('<pre class="stream%s">%s</pre>'):format(is_result and " result" or "", esc(b.text or ""))
end

local function outputs_html(cell)
  local h = {}
  for _, o in ipairs(cell.outputs or {}) do
    if o.kind == "stream" then
      h[#h + 1] = ('<pre class="stream %s">%s</pre>'):format(o.name, esc(o.text:gsub("\n$", "")))
    elseif o.kind == "display" then
      h[#h + 1] = bundle_html(o.bundle)
    elseif o.kind == "result" then
      h[#h + 1] = bundle_html(o.bundle, true)
    elseif o.kind == "error" then
      local tb = o.traceback ~= "" and o.traceback or o.evalue
      h[#h + 1] = ('<pre class="stream error">%s</pre>'):format(esc(o.ename .. ": " .. tb))
    end
  end
  return table.concat(h)
end

local function fmt_seconds(s)
  if s >= 60 then return ("%d min %02d s"):format(s // 60, math.floor(s % 60 + 0.5)) end
  return ("%.1f s"):format(s)
end
M.fmt_seconds = fmt_seconds

--- M.html(run, {base = folder for relative image paths in markdown}) -> the page's HTML text
function M.html(run, opts)
  opts = opts or {}
  local title, first_md = run.name, nil
  for _, c in ipairs(run.cells) do
    if c.type == "markdown" then first_md = c; break end
  end
  local h1 = first_md and first_md.source:match("^%s*#%s+([^\n]+)")
  if h1 then title = h1:gsub("%s*#*%s*$", "") end
  local sub = {("%s \194\183 run %s \194\183 %s"):format(run.path, os.date("!%Y-%m-%d %H:%M UTC", run.started),
    fmt_seconds(run.seconds or 0))}
  if run.quick then sub[#sub + 1] = "quick run" end
  local doc = report.Document(title, {subtitle = table.concat(sub, " \194\183 ")})
  doc:html(STYLE)
  if run.quick then
    doc:html('<div class="banner quick">Run with <code>--quick</code>: smaller data and fewer steps, so the numbers '
      .. 'and pictures below are only indicative. <code>make notebooks</code> runs the full version.</div>')
  end
  if not run.ok and run.failed_cell then
    doc:html(('<div class="banner failed">This run stopped at an error in cell [%d] (line %d); the cells after it '
      .. 'did not run.</div>'):format(run.failed_cell.count, run.failed_cell.line))
  end
  local md_opts = {ids = {}, image_uri = function(src)
    if src:match("^%a+:") then return src end
    local path = (opts.base and not src:match("^/")) and (opts.base .. "/" .. src) or src
    local f = io.open(path, "rb")
    if not f then return src end
    local bytes = f:read("a")
    f:close()
    local mime = bytes:sub(1, 8) == "\137PNG\r\n\26\n" and "image/png" or "image/jpeg"
    return uri(mime, bytes)
  end}
  local skipped_title = false
  for _, c in ipairs(run.cells) do
    if c.type == "markdown" then
      local body = {}
      local function flush()
        if #body > 0 then doc:html('<div class="prose">' .. table.concat(body, "\n") .. "</div>"); body = {} end
      end
      for _, b in ipairs(markdown.blocks(c.source, md_opts)) do
        if b.kind == "heading" and b.level == 1 and not skipped_title and c == first_md then
          skipped_title = true
        elseif b.kind == "heading" and b.level == 2 then
          flush()
          doc:section(b.text:gsub("`", ""))
        elseif b.kind == "heading" then
          body[#body + 1] = ('<h%d id="%s">%s</h%d>'):format(b.level, b.id, b.html, b.level)
        else
          body[#body + 1] = b.html
        end
      end
      flush()
    else
      local n = c.count and tostring(c.count) or " "
      local meta = c.seconds and ("line %d \194\183 %s"):format(c.line, fmt_seconds(c.seconds)) or
        ("line %d \194\183 not run"):format(c.line)
      local state = not c.count and " unrun" or (c == run.failed_cell and " failed" or "")
      doc:html(('<div class="cell%s"><div class="gut">[%s]</div><div><pre class="src"><code>%s</code></pre>'
        .. '<div class="meta">%s</div></div></div>'):format(state, n, markdown.highlight_lua(c.source), meta))
      local outs = outputs_html(c)
      if outs ~= "" then
        doc:html(('<div class="cell"><div class="gut"></div><div class="outs">%s</div></div>'):format(outs))
      end
    end
  end
  if run.prev or run.next then
    doc:html(('<div class="pager">%s%s</div>'):format(
      run.prev and ('<a href="%s.html">\u{2190} %s</a>'):format(esc(run.prev), esc(run.prev)) or "<span></span>",
      run.next and ('<a href="%s.html">%s \u{2192}</a>'):format(esc(run.next), esc(run.next)) or ""))
  end
  doc:html(('<footer>Rendered from <code>%s</code> by <code>aviary notebook run</code> on %s; the same run as a '
    .. 'Jupyter notebook: <a href="%s.ipynb">%s.ipynb</a>.</footer>'):format(esc(run.path),
    os.date("!%Y-%m-%d %H:%M UTC", run.started), esc(run.name), esc(run.name)))
  return doc:render()
end

local function write_atomic(path, text)
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("aviary.notebook: cannot write " .. tostring(err), 0) end
  f:write(text)
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then os.remove(tmp); error("aviary.notebook: cannot write " .. tostring(rerr), 0) end
  return path
end

--- M.write(run, out_dir) -> ipynb path, html path
function M.write(run, out)
  local base = run.path:match("^(.*)/[^/]*$") or "."
  local nb = write_atomic(("%s/%s.ipynb"):format(out, run.name), M.ipynb(run))
  local page = write_atomic(("%s/%s.html"):format(out, run.name), M.html(run, {base = base}))
  return nb, page
end

return M
