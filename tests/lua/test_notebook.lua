-- aviary.notebook: the cell parser, the runner (globals across cells, captured output, results, display of
-- every kind, errors, --quick), the .ipynb (nbformat's own validator) and HTML (headless Chromium) it
-- writes, plain-script mode, `aviary notebook new/run-all`, and the REPL's display().
local json = require "aviary.json"
local nb = require "aviary.notebook"
local parse = require "aviary.notebook.parse"
local markdown = require "aviary.notebook.markdown"
local display = require "aviary.notebook.display"
local runner = require "aviary.notebook.runner"

local U = require "notebook_util"
local root = U.root
local fixtures = root .. "/tests/fixtures/notebooks"
local sh, exists, aviary, write, fresh_dir = U.sh, U.exists, U.aviary, U.write, U.fresh_dir
local code_cells, text_of, validate_ipynb, browser_check = U.code_cells, U.text_of, U.validate_ipynb, U.browser_check
local abs = U.abs

describe("parsing", function()
  it("splits markdown blocks of any bracket level, -- %% separators and comment-only cells, keeping file lines", function()
    local src = table.concat({
      "--[[md",                 -- 1
      "# Title",                -- 2
      "]]",                     -- 3
      "",                       -- 4
      "x = 1",                  -- 5
      "-- %%",                  -- 6
      "-- only a comment",      -- 7
      "--[[ and a long one",    -- 8
      "]]",                     -- 9
      "-- %%",                  -- 10
      "",                       -- 11
      "y = x + 1",              -- 12
      "--[==[md",               -- 13
      "holds ]] inside",        -- 14
      "]==]",                   -- 15
      "return y",               -- 16
    }, "\n")
    local cells = nb.parse(src)
    assert.equal(#cells, 5)
    assert.same({cells[1].type, cells[1].source, cells[1].line}, {"markdown", "# Title", 2})
    assert.same({cells[2].type, cells[2].source, cells[2].line}, {"code", "x = 1", 5})
    assert.same({cells[3].type, cells[3].source, cells[3].line}, {"code", "y = x + 1", 12})
    assert.same({cells[4].type, cells[4].source, cells[4].line}, {"markdown", "holds ]] inside", 14})
    assert.same({cells[5].type, cells[5].source, cells[5].line}, {"code", "return y", 16})
  end)

  it("names the line of an unclosed markdown cell and of text after its closing bracket", function()
    assert.error_matches(function() nb.parse("x = 1\n--[=[md\nnever closed ]]\n", "nb.lua") end,
      "nb.lua:2: the markdown cell opened here has no closing ]=]")
    assert.error_matches(function() nb.parse("--[[md\nhi\n]] x = 1\n", "nb.lua") end,
      "nb.lua:3: text after the ]]")
    -- a shebang line is not code; a line that merely starts like an opener is
    local cells = nb.parse("#!/usr/bin/env aviary\n--[[md title\n]]\nx = 1\n")
    assert.equal(#cells, 1)
    assert.same({cells[1].type, cells[1].line}, {"code", 2})
    assert.equal(cells[1].source, "--[[md title\n]]\nx = 1")
  end)

  it("lexes Lua for highlighting, finds empty cells and top-level locals", function()
    local kinds = {}
    for _, t in ipairs(parse.tokens("local s = [==[a]]b]==] -- c\nx = 0x1F + 1e3 .. 'q\\'' --[[d]]")) do
      if t[1] ~= "space" then kinds[#kinds + 1] = t[1] .. ":" .. t[2] end
    end
    assert.same(kinds, {"keyword:local", "name:s", "op:=", "string:[==[a]]b]==]", "comment:-- c", "name:x", "op:=",
      "number:0x1F", "op:+", "number:1e3", "op:..", "string:'q\\''", "comment:--[[d]]"})
    assert.truthy(parse.is_empty("-- a\n--[[ b\n c ]]\n\n"))
    assert.falsy(parse.is_empty("-- a\nx()"))
    assert.same(parse.top_level_locals("local a, b <const> = 1, 2\nlocal function f() end\n  local inner = 3\n"),
      {a = true, b = true, f = true})
    local h = markdown.highlight_lua('local x = "<b>" -- note')
    assert.truthy(h:find('<span class="k">local</span>', 1, true), h)
    assert.truthy(h:find('<span class="s">&quot;&lt;b&gt;&quot;</span>', 1, true), h)
    assert.truthy(h:find('<span class="c">-- note</span>', 1, true), h)
  end)

  it("renders the markdown walkthroughs use, escaping raw HTML", function()
    local html = markdown.to_html(table.concat({
      "## A *b* `c<d>`", "", "Text with **bold**, a [link](https://x.org) and <script>.", "",
      "- one", "- two", "  - nested", "1. first", "", "| a | b |", "|---|--:|", "| 1 | 2 |", "",
      "```lua", "local x = 1", "```", "> quoted", "", "---"}, "\n"))
    for _, want in ipairs({'">A <em>b</em> <code>c&lt;d&gt;</code></h2>', "<strong>bold</strong>",
        '<a href="https://x.org">link</a>', "&lt;script&gt;", "<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>",
        "<ol><li>first</li></ol>", '<th style="text-align:right">b</th>', '<span class="k">local</span>',
        "<blockquote><p>quoted</p></blockquote>", "<hr>"}) do
      assert.truthy(html:find(want, 1, true), "missing " .. want .. " in\n" .. html)
    end
  end)
end)

describe("display", function()
  it("turns each kind of value into a bundle", function()
    local av = require "aviary"
    local plot = require "aviary.plot"
    local b = display.bundle(plot.lines{series = {{y = {1, 2, 3}}}}, {caption = "c", width = 300})
    assert.equal(b.png:sub(2, 4), "PNG")
    assert.same({b.caption, b.width}, {"c", 300})
    local w, h = display.png_size(display.bundle(av.rand(3, 10, 12)).png)
    assert.same({w, h}, {12, 10})
    w, h = display.png_size(display.bundle(av.rand(10, 12, 3):mul(255):to("uint8")).png)
    assert.same({w, h}, {12, 10}, "uint8 H x W x C")
    assert.truthy(display.bundle(av.rand(20, 20)).png, "a float H x W map in [0, 1] is an image")
    assert.falsy(display.bundle(av.rand(20, 20), {image = false}).png)
    assert.falsy(display.bundle(av.randn(4, 5) + 5).png, "values outside [0, 1] are a plain tensor")
    assert.truthy(display.bundle(av.zeros(2, 3)).text:find("FloatTensor of size 2x3", 1, true))
    local r = display.bundle({{name = "wren", acc = 0.5}, {name = "tit", acc = 0.25, n = 3}})
    assert.truthy(r.html:find('<th class="l">name</th><th class="num">acc</th><th class="num">n</th>', 1, true), r.html)
    assert.truthy(r.text:match("^name%s+acc%s+n\n%-+"), r.text)
    assert.equal(display.bundle({a = 1, b = {2, 3}}).text, "{a = 1, b = {2, 3}}")
    assert.equal(display.bundle("plain").text, "plain")
    assert.equal(display.bundle(42).text, "42")
    local png = av_test.tmpname(".png")
    require("aviary.image").save(av.zeros(3, 4, 5, {dtype = "uint8"}), png)
    assert.equal(display.png_size(display.bundle(png).png), 5)
    local jpg = av_test.tmpname(".jpg")
    require("aviary.image").save(av.zeros(3, 8, 8, {dtype = "uint8"}), jpg)
    local jb = display.bundle(jpg, {caption = "a photo"})
    assert.same({jb.jpeg:sub(1, 3), jb.png, jb.caption}, {"\255\216\255", nil, "a photo"})
    os.remove(png); os.remove(jpg)
    assert.error_matches(function() display.bundle(av_test.tmpname(".png")) end, "cannot read")
  end)

  it("draws inline in kitty and iTerm2 terminals, or saves a file in the REPL", function()
    local env = {TERM = "xterm-kitty"}
    assert.equal(display.terminal_protocol(function(k) return env[k] end), "kitty")
    env = {TERM_PROGRAM = "WezTerm"}
    assert.equal(display.terminal_protocol(function(k) return env[k] end), "iterm")
    assert.equal(display.terminal_protocol(function() return nil end), nil)
    local big = ("x"):rep(5000)
    local k = display.terminal_image(big, "kitty")
    assert.truthy(k:find("^\27_Ga=T,f=100,m=1;"), "first chunk says more follow")
    assert.truthy(k:find("\27_Gm=0;[^\27]*\27\\\n$"), "last chunk ends the image")
    assert.truthy(display.terminal_image(big, "iterm"):find("^\27%]1337;File=inline=1;size=5000;"))
    -- the REPL (bin/aviary -i reading a pipe) has display(); not a terminal, so the image goes to a file
    local input = write(abs(av_test.tmpname(".lua")),
      "display(require('aviary.plot').lines{series = {{y = {1, 2}}}})\ndisplay({1, 2})\n")
    local rc, out, err = aviary({"-i"}, root, input)
    assert.equal(rc, 0, err)
    local path = out:match("%[display%] (%S+%.png)")
    assert.truthy(path and exists(path), out)
    os.remove(path)
    assert.truthy(out:find("{1, 2}", 1, true), out)
  end)

  it("keeps the last state of redrawn lines and of progress bars", function()
    assert.equal(runner.clean_stream("a\rab\rabc\nnext\n"), "abc\nnext\n")
    local bars = "x |#--| 1/3 eta 00:02\nx |##-| 2/3 eta 00:01\nx |###| 3/3 eta 00:00\ndone\n"
    assert.equal(runner.clean_stream(bars), "x |###| 3/3 eta 00:00\ndone\n")
    assert.equal(runner.valid_utf8("ok \255 \u{e9}"), "ok ? \u{e9}")
  end)
end)

describe("running", function()
  local out_dir = fresh_dir()
  local rc, stdout, stderr = aviary({"notebook", "run", fixtures .. "/showcase.lua", "--out", out_dir, "--quick"})
  local ipynb = rc == 0 and json.read(out_dir .. "/showcase.ipynb")

  it("runs every cell in one global environment and records each kind of output", function()
    assert.equal(rc, 0, stdout .. stderr)
    assert.truthy(stderr:find("[5/5] cell at line 51", 1, true), stderr)
    local cells = code_cells(ipynb)
    assert.equal(#cells, 5, "the comment-only cell is dropped")
    for i, c in ipairs(cells) do assert.equal(c.execution_count, i) end
    assert.equal(text_of(cells[1].outputs[1].text), "quick=true\trunner=true\tname=showcase\n")
    local o2 = cells[2].outputs
    assert.same({o2[1].name, text_of(o2[1].text), o2[2].name, text_of(o2[2].text)},
      {"stdout", "written with io.write\n", "stderr", "a line on stderr\n"})
    assert.equal(text_of(cells[3].outputs[1].text), "counter\t42\n", "a global from an earlier cell")
    assert.equal(text_of(cells[3].outputs[2].data["text/plain"]), "42")
    local o4 = cells[4].outputs
    assert.truthy(text_of(o4[1].text):match("^work +|#+| 50/50 100%.0%%[^\n]*\n$"), text_of(o4[1].text))
    assert.equal(text_of(o4[2].text), "from a shell\nhidden is\tnil\n")
    assert.truthy(stderr:find("showcase.lua:45: warning: 'hidden' is nil here: the cell at line 27 declared it local",
      1, true), stderr)
  end)

  it("shows figures, images, records, tensors, HTML and markdown, and a returned value as the result", function()
    assert.equal(rc, 0, stdout .. stderr)
    local o = code_cells(ipynb)[5].outputs
    local kinds = {}
    for _, x in ipairs(o) do kinds[#kinds + 1] = x.output_type end
    assert.same(kinds, {"display_data", "display_data", "display_data", "display_data", "display_data", "display_data",
      "display_data", "display_data", "display_data", "execute_result"})
    assert.truthy(o[1].data["image/png"]:match("^iVBORw0KGgo"), "a figure as PNG")
    assert.same({o[1].metadata["image/png"].width, o[1].metadata.caption}, {400, "a figure"})
    assert.equal(text_of(o[2].data["text/markdown"]), "*a figure*", "the caption shows in Jupyter too")
    assert.truthy(o[3].data["image/png"] and o[4].data["image/png"], "float and uint8 image tensors")
    assert.truthy(text_of(o[5].data["text/html"]):find('<th class="l">class</th><th class="num">acc</th>', 1, true))
    assert.truthy(text_of(o[5].data["text/html"]):find("<td class=\"num\">0.8123</td>", 1, true))
    assert.truthy(text_of(o[6].data["text/plain"]):find("LongTensor of size 2x3", 1, true))
    assert.equal(text_of(o[7].data["text/html"]), "<b>bold html</b>")
    assert.equal(text_of(o[8].data["text/markdown"]), "*markdown* output")
    assert.equal(text_of(o[9].data["text/plain"]), "{a = 1, b = {2, 3}}")
    assert.equal(o[10].execution_count, 5)
    assert.truthy(text_of(o[10].data["text/html"]):find('<th class="l">k</th><th class="num">v</th>', 1, true))
    assert.same(ipynb.metadata.kernelspec, {name = "aviary", display_name = "aviary (Lua 5.4)", language = "lua"})
    assert.same({ipynb.metadata.language_info.name, ipynb.metadata.language_info.version,
      ipynb.metadata.language_info.file_extension}, {"lua", "5.4", ".lua"})
    assert.equal(ipynb.metadata.aviary.quick, true)
  end)

  it("writes an .ipynb that nbformat validates", function()
    assert.equal(rc, 0, stdout .. stderr)
    validate_ipynb(out_dir .. "/showcase.ipynb")
  end)

  it("writes an HTML page that Chromium opens without errors, every image decoded", function()
    assert.equal(rc, 0, stdout .. stderr)
    local page = io.open(out_dir .. "/showcase.html"):read("a")
    for _, want in ipairs({"<title>Showcase</title>", "Run with <code>--quick</code>", '<div class="gut">[5]</div>',
        '<span class="k">local</span>', "line 51 \194\183", "<figcaption>a figure</figcaption>", "<b>bold html</b>",
        "<em>markdown</em> output", ">Globals carry over</h2>"}) do
      assert.truthy(page:find(want, 1, true), "missing " .. want)
    end
    local brc, r, text = browser_check(out_dir .. "/showcase.html")
    assert.equal(brc, 0, text)
    assert.equal(#r.console_errors + #r.page_errors, 0, text)
    assert.equal(#r.images, 3, text)
    for _, img in ipairs(r.images) do assert.truthy(img.ok, text) end
    assert.truthy(r.page_width <= 1366, "the page scrolls sideways: " .. r.page_width)
  end)

  it("without --quick, NB.quick is false", function()
    local d = fresh_dir()
    local rc2, o, e = aviary({"notebook", "run", fixtures .. "/showcase.lua", "--out", d})
    assert.equal(rc2, 0, o .. e)
    local cells = code_cells(json.read(d .. "/showcase.ipynb"))
    assert.equal(text_of(cells[1].outputs[1].text), "quick=false\trunner=true\tname=showcase\n")
    assert.falsy(io.open(d .. "/showcase.html"):read("a"):find("Run with <code>--quick</code>", 1, true))
  end)

  it("stops at the first error, exits non-zero and puts the error in both files", function()
    local d = fresh_dir()
    local rc2, o, e = aviary({"notebook", "run", fixtures .. "/fails.lua", "--out", d})
    assert.equal(rc2, 1, o .. e)
    assert.truthy(e:find("[2/3] cell at line 10", 1, true) and e:find("FAILED", 1, true), e)
    local cells = code_cells(json.read(d .. "/fails.ipynb"))
    local err = cells[2].outputs[2]
    assert.equal(text_of(cells[2].outputs[1].text), "before the error\n", "output before the error is kept")
    assert.same({err.output_type, err.ename}, {"error", "LuaError"})
    assert.truthy(err.evalue:find("fails.lua:11: boom: cell two", 1, true), err.evalue)
    assert.truthy(table.concat(err.traceback, "\n"):find("fails.lua:14:", 1, true), "file line numbers in the traceback")
    assert.equal(cells[3].execution_count, nil, "the cell after the error did not run")
    assert.equal(#cells[3].outputs, 0)
    validate_ipynb(d .. "/fails.ipynb")
    local page = io.open(d .. "/fails.html"):read("a")
    assert.truthy(page:find("boom: cell two", 1, true) and page:find("stopped at an error in cell [2] (line 10)", 1, true))
  end)

  it("reports a syntax error with the file's line number, and a mid-notebook return as the cell's result", function()
    local d = fresh_dir()
    local path = write(d .. "/mixed.lua", "NB = require('aviary.notebook').setup(...)\n-- %%\nreturn 1 + 1\n-- %%\n"
      .. "print('next')\n-- %%\n\nx = = 2\n-- %%\nprint('not reached')\n")
    local rc2, o, e = aviary({"notebook", "run", path})
    assert.equal(rc2, 1, o .. e)
    local cells = code_cells(json.read(d .. "/out/mixed.ipynb"))
    assert.same({cells[2].outputs[1].output_type, text_of(cells[2].outputs[1].data["text/plain"])}, {"execute_result", "2"})
    assert.equal(text_of(cells[3].outputs[1].text), "next\n")
    assert.equal(cells[4].outputs[1].ename, "SyntaxError")
    assert.truthy(cells[4].outputs[1].evalue:find("mixed.lua:8:", 1, true), cells[4].outputs[1].evalue)
    assert.equal(cells[5].execution_count, nil)
  end)

  it("turns os.exit in a cell into an error, so both files are still written", function()
    local d = fresh_dir()
    local path = write(d .. "/quits.lua", "NB = require('aviary.notebook').setup(...)\n-- %%\nprint('bye')\nos.exit(0)\n")
    local rc2, o, e = aviary({"notebook", "run", path})
    assert.equal(rc2, 1, o .. e)
    local cells = code_cells(json.read(d .. "/out/quits.ipynb"))
    assert.truthy(cells[2].outputs[2].evalue:find("quits.lua:4: os.exit(0) called", 1, true), cells[2].outputs[2].evalue)
    assert.truthy(exists(d .. "/out/quits.html"))
  end)

  it("runs the same file as a plain script, saving displayed images beside the outputs", function()
    local d = fresh_dir()
    os.execute(("cp %s %s/"):format(sh(fixtures .. "/showcase.lua"), sh(d)))
    local rc2, o, e = aviary({"showcase.lua", "--quick"}, d)
    assert.equal(rc2, 0, o .. e)
    assert.truthy(o:find("quick=true\trunner=false\tname=showcase", 1, true), o)
    assert.truthy(o:find("hidden is\tgone after this cell", 1, true), "locals live on in a plain script")
    assert.truthy(o:find("[display] out/showcase_files/1.png  a figure", 1, true), o)
    local f = io.open(d .. "/out/showcase_files/3.png", "rb")
    assert.truthy(f and f:read(4) == "\137PNG", "the third image is saved")
    assert.truthy(o:find("sparrow", 1, true) and o:find("bold html", 1, true), o)
  end)
end)

describe("the notebook command", function()
  it("prints its usage, and refuses unknown commands with a suggestion", function()
    local rc, o = aviary({"notebook"})
    assert.equal(rc, 0)
    assert.truthy(o:find("usage: aviary notebook run", 1, true), o)
    local rc2, _, e = aviary({"notebook", "rnu"})
    assert.equal(rc2, 1)
    assert.truthy(e:find("unknown command 'rnu' (did you mean 'run'?)", 1, true), e)
  end)

  it("new writes a notebook from the template that runs, and never replaces a file", function()
    local d = fresh_dir()
    local rc, o, e = aviary({"notebook", "new", "007_my_study"}, d)
    assert.equal(rc, 0, o .. e)
    local src = io.open(d .. "/notebooks/007_my_study.lua"):read("a")
    assert.truthy(src:find("# My study", 1, true) and src:find('NB = require("aviary.notebook").setup(...)', 1, true))
    rc, o, e = aviary({"notebook", "run", "notebooks/007_my_study.lua"}, d)
    assert.equal(rc, 0, o .. e)
    assert.truthy(exists(d .. "/notebooks/out/007_my_study.html"))
    validate_ipynb(d .. "/notebooks/out/007_my_study.ipynb")
    rc, o, e = aviary({"notebook", "new", "007_my_study"}, d)
    assert.equal(rc, 1)
    assert.truthy(e:find("already exists", 1, true), e)
  end)

  it("run-all runs NNN_*.lua in order, each in its own process, and stops at a failure", function()
    local d = fresh_dir()
    os.execute("mkdir -p " .. sh(d .. "/notebooks"))
    write(d .. "/notebooks/001_b.lua", "NB = require('aviary.notebook').setup(...)\n-- %%\nassert(SHARED == nil)\nprint('b')\n")
    write(d .. "/notebooks/000_a.lua", "NB = require('aviary.notebook').setup(...)\n-- %%\nSHARED = 1\nprint('a')\n")
    write(d .. "/notebooks/helper.lua", "error('not a walkthrough')\n")
    local rc, o, e = aviary({"notebook", "run-all", "--quick"}, d)
    assert.equal(rc, 0, o .. e)
    assert.truthy(e:find("== 1/2 notebooks/000_a.lua", 1, true) and e:find("== 2/2 notebooks/001_b.lua", 1, true), e)
    assert.truthy(e:find("2 of 2 notebooks ran (--quick)", 1, true), e)
    local page = io.open(d .. "/notebooks/out/001_b.html"):read("a")
    assert.truthy(page:find('<a href="000_a.html">\u{2190} 000_a</a>', 1, true), "a page links to the walkthrough before it")
    write(d .. "/notebooks/000_a.lua", "NB = require('aviary.notebook').setup(...)\n-- %%\nerror('first fails')\n")
    rc, o, e = aviary({"notebook", "run-all"}, d)
    assert.equal(rc, 1, o .. e)
    assert.falsy(e:find("== 2/2", 1, true), "stops at the first failure")
    assert.truthy(e:find("failed: notebooks/000_a.lua", 1, true), e)
  end)
end)
