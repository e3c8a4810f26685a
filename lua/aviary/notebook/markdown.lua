--- aviary.notebook.markdown: the markdown of notebook cells to HTML, and Lua code to highlighted HTML.
-- Covers what walkthroughs use: ATX headings, paragraphs, emphasis, strong, code spans, links, images,
-- fenced code, block quotes, nested lists, pipe tables and rules. Raw HTML is escaped, not passed through.
local parse = require "aviary.notebook.parse"

local M = {}

local function esc(s)
  return (s:gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end
M.escape = esc

local BUILTINS = {}
for w in ("av display print require NB assert error pairs ipairs tostring tonumber type select pcall setmetatable "
  .. "getmetatable string table math io os utf8 coroutine debug"):gmatch("%S+") do BUILTINS[w] = true end

--- M.highlight_lua(code) -> HTML with <span class="k|s|c|n|b"> around keywords, strings, comments, numbers
-- and well-known globals
function M.highlight_lua(code)
  local out = {}
  for _, t in ipairs(parse.tokens(code)) do
    local kind, text = t[1], esc(t[2])
    local class = ({keyword = "k", string = "s", comment = "c", number = "n"})[kind]
    if kind == "name" and BUILTINS[t[2]] then class = "b" end
    out[#out + 1] = class and ('<span class="%s">%s</span>'):format(class, text) or text
  end
  return table.concat(out)
end

-- inline markup; code spans are set aside first so nothing inside them is touched
local function inline(s, opts)
  local codes = {}
  s = s:gsub("(`+)(.-)%1", function(_, c)
    codes[#codes + 1] = "<code>" .. esc(c:match("^ ?(.-) ?$")) .. "</code>"
    return "\1" .. #codes .. "\2"
  end)
  s = esc(s)
  s = s:gsub("!%[([^%]]*)%]%(([^)%s]+)%)", function(alt, src)
    local uri = opts and opts.image_uri and opts.image_uri(src) or src
    return ('<img alt="%s" src="%s">'):format(alt, uri)
  end)
  s = s:gsub("%[([^%]]+)%]%(([^)%s]+)%)", '<a href="%2">%1</a>')
  s = s:gsub("&lt;(https?://[^%s&]+)&gt;", '<a href="%1">%1</a>')
  s = s:gsub("%*%*(%S.-%S?)%*%*", "<strong>%1</strong>"):gsub("__(%S.-%S?)__", "<strong>%1</strong>")
  s = s:gsub("%*(%S.-%S?)%*", "<em>%1</em>"):gsub("%f[%w_]_(%S.-%S?)_%f[^%w_]", "<em>%1</em>")
  s = s:gsub("  $", "<br>")
  return (s:gsub("\1(%d+)\2", function(i) return codes[tonumber(i)] end))
end
M.inline = inline

local function slug(text, used)
  local s = text:lower():gsub("<[^>]*>", ""):gsub("&%a+;", ""):gsub("[^%w%s%-]", ""):gsub("%s+", "-")
  if s == "" then s = "section" end
  local base, n = s, 1
  while used[s] do n = n + 1; s = base .. "-" .. n end
  used[s] = true
  return s
end

local function split_row(line)
  line = line:gsub("^%s*|", ""):gsub("|%s*$", "")
  local cells = {}
  for c in (line .. "|"):gmatch("(.-)|") do cells[#cells + 1] = c:match("^%s*(.-)%s*$") end
  return cells
end

local function list_item(line)
  local ind, marker, rest = line:match("^( *)([%-%*%+]) +(.*)$")
  if ind then return #ind, "ul", rest end
  ind, marker, rest = line:match("^( *)(%d+)[.)] +(.*)$")
  if ind then return #ind, "ol", rest, tonumber(marker) end
  return nil
end

--- M.blocks(markdown, opts) -> list of {kind = "heading", level =, text =, html =, id =} or {kind = "html", html =}
-- (headings are separate so a renderer can put them in a table of contents); opts.image_uri(src) maps image
-- sources, opts.ids a set of ids already used in the page
function M.blocks(md, opts)
  opts = opts or {}
  local used = opts.ids or {}
  local lines = {}
  for l in (md:gsub("\t", "    ") .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  local out, para, i = {}, {}, 1
  local function html(h) out[#out + 1] = {kind = "html", html = h} end
  local function flush()
    if #para > 0 then html("<p>" .. inline(table.concat(para, "\n"), opts) .. "</p>") end
    para = {}
  end
  while i <= #lines do
    local l = lines[i]
    local hashes, htext = l:match("^(#+)%s+(.-)%s*#*%s*$")
    local fence, lang = l:match("^%s*(```+)%s*([%w_+-]*)")
    if l:match("^%s*$") then
      flush(); i = i + 1
    elseif hashes and #hashes <= 6 then
      flush()
      local inner = inline(htext, opts)
      out[#out + 1] = {kind = "heading", level = #hashes, text = htext, html = inner, id = slug(htext, used)}
      i = i + 1
    elseif fence then
      flush()
      local code, j = {}, i + 1
      while j <= #lines and not lines[j]:match("^%s*" .. fence) do code[#code + 1] = lines[j]; j = j + 1 end
      local src = table.concat(code, "\n")
      local body = (lang == "lua" or lang == "") and M.highlight_lua(src) or esc(src)
      html('<pre class="code"><code>' .. body .. "</code></pre>")
      i = j + 1
    elseif l:match("^%s*[%-%*_]%s*[%-%*_]%s*[%-%*_][%s%-%*_]*$") and not list_item(l) then
      flush(); html("<hr>"); i = i + 1
    elseif l:match("^%s*>") then
      flush()
      local q = {}
      while i <= #lines and lines[i]:match("^%s*>") do q[#q + 1] = lines[i]:gsub("^%s*> ?", ""); i = i + 1 end
      local inner = {}
      for _, b in ipairs(M.blocks(table.concat(q, "\n"), opts)) do
        inner[#inner + 1] = b.kind == "heading" and ("<h%d>%s</h%d>"):format(b.level, b.html, b.level) or b.html
      end
      html("<blockquote>" .. table.concat(inner) .. "</blockquote>")
    elseif l:find("|", 1, true) and lines[i + 1] and lines[i + 1]:match("^%s*|?%s*:?%-+:?%s*|[%s|:%-]*$") then
      flush()
      local head, align = split_row(l), {}
      for k, c in ipairs(split_row(lines[i + 1])) do
        align[k] = c:match("^:.*:$") and "center" or c:match(":$") and "right" or nil
      end
      local h = {'<table class="md"><thead><tr>'}
      for k, c in ipairs(head) do
        h[#h + 1] = ("<th%s>%s</th>"):format(align[k] and (' style="text-align:' .. align[k] .. '"') or "", inline(c, opts))
      end
      h[#h + 1] = "</tr></thead><tbody>"
      i = i + 2
      while i <= #lines and lines[i]:find("|", 1, true) and not lines[i]:match("^%s*$") do
        h[#h + 1] = "<tr>"
        for k, c in ipairs(split_row(lines[i])) do
          h[#h + 1] = ("<td%s>%s</td>"):format(align[k] and (' style="text-align:' .. align[k] .. '"') or "", inline(c, opts))
        end
        h[#h + 1] = "</tr>"
        i = i + 1
      end
      h[#h + 1] = "</tbody></table>"
      html(table.concat(h))
    elseif list_item(l) then
      flush()
      -- a stack of open lists by indentation; an item's continuation lines join its text
      local h, stack = {}, {}
      while i <= #lines do
        local ind, kind, text, start = list_item(lines[i])
        if ind then
          while #stack > 0 and ind < stack[#stack].ind do
            h[#h + 1] = "</li></" .. stack[#stack].kind .. ">"; stack[#stack] = nil
          end
          local top = stack[#stack]
          if top and ind == top.ind and kind == top.kind then
            h[#h + 1] = "</li><li>"
          elseif top and ind == top.ind then
            h[#h + 1] = "</li></" .. top.kind .. ">"; stack[#stack] = nil
            h[#h + 1] = (kind == "ol" and start ~= 1) and ('<ol start="%d"><li>'):format(start) or "<" .. kind .. "><li>"
            stack[#stack + 1] = {ind = ind, kind = kind}
          else
            h[#h + 1] = (kind == "ol" and start ~= 1) and ('<ol start="%d"><li>'):format(start) or "<" .. kind .. "><li>"
            stack[#stack + 1] = {ind = ind, kind = kind}
          end
          local item = {text}
          i = i + 1
          while i <= #lines and lines[i]:match("^%s+%S") and not list_item(lines[i]) do
            item[#item + 1] = lines[i]:match("^%s*(.-)$"); i = i + 1
          end
          h[#h + 1] = inline(table.concat(item, "\n"), opts)
        elseif lines[i]:match("^%s*$") and lines[i + 1] and list_item(lines[i + 1]) then
          i = i + 1
        else
          break
        end
      end
      while #stack > 0 do h[#h + 1] = "</li></" .. stack[#stack].kind .. ">"; stack[#stack] = nil end
      html(table.concat(h))
    else
      para[#para + 1] = l:match("^%s*(.-)$")
      i = i + 1
    end
  end
  flush()
  return out
end

--- M.to_html(markdown, opts) -> HTML
function M.to_html(md, opts)
  local h = {}
  for _, b in ipairs(M.blocks(md, opts)) do
    h[#h + 1] = b.kind == "heading" and ('<h%d id="%s">%s</h%d>'):format(b.level, b.id, b.html, b.level) or b.html
  end
  return table.concat(h, "\n")
end

return M
