--- aviary.data.synthetic: a procedurally drawn stand-in for CUB-200-2011.
--
--   local synth = require "aviary.data.synthetic"
--   synth.generate{classes = 200, per_class = 60, size = "500x375", quality = 90, seed = 1,
--                  out = "data/synthetic", grayscale_fraction = 0.01, tgz = false}
--
-- writes out/CUB_200_2011/ in the official format (images.txt,
-- image_class_labels.txt, train_test_split.txt, classes.txt,
-- bounding_boxes.txt, images/NNN.Class_Name/*.jpg; no parts/) so that every tool
-- that reads the real set reads this one (aviary.data.cub).
--
-- Classes come in genera of two to four species. A genus fixes the body plan
-- (proportions, beak and tail shape) and the plumage colours, drawn from one
-- palette shared by all genera; its species differ only in pattern (cap, wing
-- bars, breast spots or streaks, eye stripe, eye ring) or in one shape (beak,
-- tail), so no colour decides a class. Within a class, pose, scale, position,
-- lighting, colour, background (sky, foliage, water; gradients, leaves,
-- branches, flowers), blur, noise and partial occlusion vary from image to
-- image. The drawing is C (aviary._draw); Lua only picks parameters. Every
-- image depends only on (seed, class, index), so the output is the same bytes
-- for the same options whatever the order or number of workers.
local core = require "aviary.core"
local D = core._draw

local M = {}

-- ---- random numbers: splitmix64, keyed by integers -------------------------------
local Rng = {}
Rng.__index = Rng

local function mix(z)
  z = (z ~ (z >> 30)) * -4658895280553007687 -- 0xbf58476d1ce4e5b9
  z = (z ~ (z >> 27)) * -7723592293110705685 -- 0x94d049bb133111eb
  return z ~ (z >> 31)
end
local GOLDEN = -7046029254386353131 -- 0x9e3779b97f4a7c15

function M.rng(...)
  local s = 0
  for _, k in ipairs({...}) do s = mix(s + GOLDEN + math.tointeger(k)) end
  return setmetatable({s = s}, Rng)
end
function Rng:next()
  self.s = self.s + GOLDEN
  return mix(self.s)
end
function Rng:uniform(a, b)
  local u = (self:next() >> 11) * (1.0 / 9007199254740992.0)
  if a == nil then return u end
  return a + (b - a) * u
end
function Rng:int(a, b) return a + math.floor(self:uniform() * (b - a + 1)) end
function Rng:chance(p) return self:uniform() < p end
function Rng:choice(t) return t[self:int(1, #t)] end
function Rng:normal(mu, sigma)
  local u1, u2 = self:uniform(), self:uniform()
  return (mu or 0) + (sigma or 1) * math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)
end

-- ---- the shared palette ------------------------------------------------------------
local PALETTE = {
  {"Red", {196, 40, 36}}, {"Crimson", {150, 20, 50}}, {"Orange", {232, 128, 40}},
  {"Yellow", {236, 204, 52}}, {"Olive", {128, 128, 56}}, {"Green", {64, 140, 72}},
  {"Blue", {52, 90, 196}}, {"Azure", {90, 160, 220}}, {"Slate", {96, 104, 120}},
  {"Gray", {150, 150, 146}}, {"Black", {30, 30, 34}}, {"White", {236, 236, 230}},
  {"Brown", {120, 78, 44}}, {"Rufous", {176, 92, 48}}, {"Buff", {214, 186, 140}},
  {"Purple", {112, 60, 140}},
}
M.palette = PALETTE

local NOUNS = {"Finch", "Warbler", "Sparrow", "Wren", "Tanager", "Flycatcher", "Vireo", "Thrush",
  "Bunting", "Grosbeak", "Oriole", "Kingbird", "Jay", "Tern", "Swallow", "Chat", "Shrike", "Pipit",
  "Towhee", "Waxwing", "Kingfisher", "Cuckoo", "Grebe", "Gull", "Woodpecker", "Nuthatch", "Creeper",
  "Starling", "Myna", "Robin"}
local REGIONS = {"Northern", "Southern", "Eastern", "Western", "Lesser", "Greater", "Mountain",
  "Coastal", "Desert", "Island", "Forest", "Marsh", "Plains", "Highland", "Lowland", "Canyon"}
local BEAKS = {"conical", "thin", "hooked", "long"}
local BEAK_ADJ = {conical = "Thick_Billed", thin = "Slender_Billed", hooked = "Hook_Billed", long = "Long_Billed"}
local TAILS = {"short", "long", "forked", "fan"}
local TAIL_ADJ = {short = "Short_Tailed", long = "Long_Tailed", forked = "Fork_Tailed", fan = "Fan_Tailed"}

local function pick_color(r, avoid)
  while true do
    local i = r:int(1, #PALETTE)
    if not avoid or not avoid[i] then return i end
  end
end

-- the genus: body plan and base plumage (palette indices)
local function new_genus(r)
  local g = {
    noun = r:choice(NOUNS),
    aspect = r:uniform(0.8, 1.25),    -- body length / height
    plump = r:uniform(0.85, 1.2),
    head = r:uniform(0.85, 1.15),
    beak = r:choice(BEAKS),
    tail = r:choice(TAILS),
    legs = r:chance(0.5) and {60, 50, 40} or {190, 150, 110},
  }
  g.body = pick_color(r)
  g.wing = r:chance(0.6) and pick_color(r, {[g.body] = true}) or g.body
  g.breast = r:chance(0.7) and pick_color(r, {[g.body] = true}) or g.body
  return g
end

-- a species: the genus plus a few pattern or shape traits
local TRAITS = {"cap", "wingbar", "spots", "streaks", "eyestripe", "eyering", "beak", "tail", "throat"}
local function new_species(g, r)
  local s = {}
  for k, v in pairs(g) do s[k] = v end
  local n = r:int(1, 2)
  for _ = 1, n do
    local t = r:choice(TRAITS)
    if t == "cap" then s.cap = pick_color(r, {[g.body] = true})
    elseif t == "wingbar" then s.wingbar = pick_color(r, {[g.wing] = true}); s.wingbars = r:int(1, 2)
    elseif t == "spots" then s.spots = pick_color(r, {[g.breast] = true}); s.streaks = nil
    elseif t == "streaks" then s.streaks = pick_color(r, {[g.breast] = true}); s.spots = nil
    elseif t == "eyestripe" then s.eyestripe = pick_color(r, {[g.body] = true})
    elseif t == "eyering" then s.eyering = true
    elseif t == "beak" then s.beak = r:choice(BEAKS)
    elseif t == "tail" then s.tail = r:choice(TAILS)
    elseif t == "throat" then s.throat = pick_color(r, {[g.breast] = true})
    end
  end
  return s
end

local function signature(s)
  return table.concat({s.noun, s.body, s.wing, s.breast, s.cap or 0, s.wingbar or 0, s.wingbars or 0,
    s.spots or 0, s.streaks or 0, s.eyestripe or 0, tostring(s.eyering), s.beak, s.tail, s.throat or 0,
    ("%.2f"):format(s.aspect)}, "|")
end

local function species_name(s, g)
  local adj
  if s.cap then adj = PALETTE[s.cap][1] .. "_Crowned"
  elseif s.throat then adj = PALETTE[s.throat][1] .. "_Throated"
  elseif s.wingbar then adj = s.wingbars == 2 and "Double_Barred" or "Bar_Winged"
  elseif s.spots then adj = "Spotted"
  elseif s.streaks then adj = "Streaked"
  elseif s.eyestripe then adj = "Masked"
  elseif s.eyering then adj = "Spectacled"
  elseif s.beak ~= g.beak then adj = BEAK_ADJ[s.beak]
  elseif s.tail ~= g.tail then adj = TAIL_ADJ[s.tail]
  else adj = "Common" end
  return adj .. "_" .. PALETTE[s.body][1] .. "_" .. s.noun
end

--- the class list for (n, seed): {{id=, name="NNN.Synthetic_...", spec={...}}, ...}
function M.classes(n, seed)
  local r = M.rng(seed, 7919)
  local out, sigs, names = {}, {}, {}
  while #out < n do
    local g = new_genus(r)
    local k = math.min(r:int(2, 4), n - #out)
    local made, tries = 0, 0
    while made < k and tries < 50 do
      tries = tries + 1
      local s = made == 0 and new_species(g, r) or new_species(g, r)
      local sig = signature(s)
      if not sigs[sig] then
        sigs[sig] = true
        local base = species_name(s, g)
        local name, j = base, 0
        while names[name] do
          j = j + 1
          name = (j <= #REGIONS) and (REGIONS[j] .. "_" .. base) or (base .. "_" .. j)
        end
        names[name] = true
        made = made + 1
        local id = #out + 1
        out[id] = {id = id, name = ("%03d.Synthetic_%s"):format(id, name), spec = s}
      end
    end
  end
  return out
end

-- ---- drawing ---------------------------------------------------------------------------
local function jitter(c, r, amount)
  return {math.max(0, math.min(255, c[1] + r:normal(0, amount))),
          math.max(0, math.min(255, c[2] + r:normal(0, amount))),
          math.max(0, math.min(255, c[3] + r:normal(0, amount)))}
end

local function col(i) return PALETTE[i][2] end

local function clamp(v, a, b) return v < a and a or v > b and b or v end

-- a bird frame: local coordinates in bird lengths, facing +x, y down
local Frame = {}
Frame.__index = Frame
local function frame(cx, cy, L, angle, flip)
  return setmetatable({cx = cx, cy = cy, L = L, cs = math.cos(angle), sn = math.sin(angle), angle = angle,
    flip = flip, x0 = math.huge, y0 = math.huge, x1 = -math.huge, y1 = -math.huge}, Frame)
end
function Frame:pt(x, y)
  x, y = x * self.L * self.flip, y * self.L
  return self.cx + x * self.cs - y * self.sn, self.cy + x * self.sn + y * self.cs
end
function Frame:grow(x, y, r)
  r = r or 0
  if x - r < self.x0 then self.x0 = x - r end
  if y - r < self.y0 then self.y0 = y - r end
  if x + r > self.x1 then self.x1 = x + r end
  if y + r > self.y1 then self.y1 = y + r end
end
function Frame:ellipse(cv, x, y, rx, ry, ang, c, a, track)
  local px, py = self:pt(x, y)
  local A = self.angle + ang * self.flip
  rx, ry = rx * self.L, ry * self.L
  cv:ellipse(px, py, rx, ry, A, c, a)
  if track ~= false then
    local cs, sn = math.cos(A), math.sin(A)
    local ex = math.sqrt(rx * rx * cs * cs + ry * ry * sn * sn)
    local ey = math.sqrt(rx * rx * sn * sn + ry * ry * cs * cs)
    self:grow(px - ex, py - ey); self:grow(px + ex, py + ey)
  end
end
function Frame:poly(cv, pts, c, a, track)
  local out = {}
  for i = 1, #pts, 2 do
    local x, y = self:pt(pts[i], pts[i + 1])
    out[i], out[i + 1] = x, y
    if track ~= false then self:grow(x, y) end
  end
  cv:polygon(out, c, a)
end
function Frame:line(cv, pts, w, c, a, track)
  local out = {}
  for i = 1, #pts, 2 do
    local x, y = self:pt(pts[i], pts[i + 1])
    out[i], out[i + 1] = x, y
    if track ~= false then self:grow(x, y, w * self.L / 2) end
  end
  cv:line(out, w * self.L, c, a)
end

local function draw_tail(cv, f, s, pal, r)
  local kind, up = s.tail, r:uniform(-0.08, 0.1)
  local x0 = -0.26 * s.aspect
  if kind == "short" then
    f:poly(cv, {x0 + 0.04, -0.06, x0 - 0.16, -0.05 + up, x0 - 0.17, 0.03 + up, x0 + 0.04, 0.04}, pal.wing)
  elseif kind == "long" then
    f:poly(cv, {x0 + 0.04, -0.05, x0 - 0.36, -0.03 + up * 2, x0 - 0.35, 0.03 + up * 2, x0 + 0.04, 0.04}, pal.wing)
  elseif kind == "forked" then
    f:poly(cv, {x0 + 0.04, -0.05, x0 - 0.32, -0.09 + up * 2, x0 - 0.18, 0.0 + up, x0 - 0.32, 0.08 + up * 2,
      x0 + 0.04, 0.04}, pal.wing)
  else -- fan
    f:poly(cv, {x0 + 0.04, -0.03, x0 - 0.2, -0.14 + up, x0 - 0.25, 0.0 + up, x0 - 0.2, 0.14 + up,
      x0 + 0.04, 0.03}, pal.wing)
    f:line(cv, {x0 - 0.02, 0.0, x0 - 0.22, 0.0 + up}, 0.012, pal.dark, 0.5)
  end
end

local function draw_beak(cv, f, s, pal, hx, hy, hr)
  local bx = hx + hr * 0.85
  local by = hy + hr * 0.1
  if s.beak == "conical" then
    f:poly(cv, {bx - 0.01, by - 0.045, bx + 0.1, by + 0.005, bx - 0.01, by + 0.045}, pal.beak)
  elseif s.beak == "thin" then
    f:poly(cv, {bx - 0.01, by - 0.02, bx + 0.13, by + 0.01, bx - 0.01, by + 0.022}, pal.beak)
  elseif s.beak == "hooked" then
    f:poly(cv, {bx - 0.01, by - 0.035, bx + 0.08, by - 0.025, bx + 0.11, by + 0.01, bx + 0.09, by + 0.04,
      bx + 0.07, by + 0.01, bx - 0.01, by + 0.035}, pal.beak)
  else -- long
    f:poly(cv, {bx - 0.01, by - 0.022, bx + 0.24, by + 0.02, bx - 0.01, by + 0.024}, pal.beak)
  end
  f:line(cv, {bx - 0.005, by + 0.002, bx + 0.05, by + 0.006}, 0.006, pal.dark, 0.6, false)
end

-- draws the bird of species s into cv; returns the frame (its box is the bird's extent)
local function draw_bird(cv, s, r, cx, cy, L, angle, flip, light, perch_y)
  local function pc(i, amt) return jitter(col(i), r, amt or 10) end
  local pal = {body = pc(s.body), wing = pc(s.wing), breast = pc(s.breast), dark = {25, 22, 20},
    beak = s.beak == "long" and jitter({60, 50, 40}, r, 8) or jitter(r:chance(0.5) and {230, 170, 60} or {70, 62, 56}, r, 8)}
  pal.head = pal.body
  local f = frame(cx, cy, L, angle, flip)
  local a, p = s.aspect, s.plump
  local hr = 0.11 * s.head
  local hx, hy = 0.27 * a, -0.14 * p - r:uniform(0, 0.04)
  -- legs (to the perch, if any)
  if perch_y then
    for _, lx in ipairs({-0.03, 0.05}) do
      local x, y = f:pt(lx, 0.14 * p)
      local ly = math.max(perch_y, y + 2)
      cv:line({x, y, x + r:uniform(-2, 2), ly}, math.max(1, 0.014 * L), s.legs)
      f:grow(x, ly, 1)
    end
  end
  draw_tail(cv, f, s, pal, r)
  -- body and breast
  f:ellipse(cv, 0, 0, 0.3 * a, 0.17 * p, 0, pal.body)
  f:ellipse(cv, 0.06 * a, 0.05 * p, 0.22 * a, 0.11 * p, 0.15, pal.breast)
  if s.spots then
    local c = pc(s.spots, 6)
    for _ = 1, r:int(7, 12) do
      f:ellipse(cv, r:uniform(-0.06, 0.2) * a, r:uniform(0.0, 0.12) * p, 0.018, 0.014, r:uniform(0, 3), c, 0.9, false)
    end
  elseif s.streaks then
    local c = pc(s.streaks, 6)
    for _ = 1, r:int(6, 9) do
      local x, y = r:uniform(-0.08, 0.2) * a, r:uniform(0.0, 0.11) * p
      f:line(cv, {x, y, x - 0.05, y + 0.012}, 0.012, c, 0.9, false)
    end
  end
  if s.throat then f:ellipse(cv, hx - 0.02, hy + hr * 0.9, hr * 0.8, hr * 0.55, 0.3, pc(s.throat)) end
  -- wing
  local wing_ang = r:uniform(-0.25, 0.05)
  f:ellipse(cv, -0.04 * a, -0.02 * p, 0.23 * a, 0.1 * p, wing_ang, pal.wing)
  f:line(cv, {0.12 * a, -0.04 * p, -0.2 * a, 0.0}, 0.008, pal.dark, 0.35, false) -- feather edge
  if s.wingbar then
    local c = pc(s.wingbar, 6)
    for k = 1, s.wingbars or 1 do
      local dx = (k - 1) * -0.07
      f:line(cv, {0.06 * a + dx, -0.08 * p, 0.0 * a + dx, 0.05 * p}, 0.022, c)
    end
  end
  -- head, cap, eye
  f:ellipse(cv, hx, hy, hr, hr * 0.95, 0, pal.head)
  if s.cap then
    local pts = {}
    for k = 0, 10 do
      local t = math.pi + k / 10 * math.pi
      pts[#pts + 1] = hx + hr * 1.01 * math.cos(t) + 0.005
      pts[#pts + 1] = hy + hr * 0.96 * math.sin(t) - 0.01
    end
    pts[#pts + 1] = hx - hr * 0.4; pts[#pts + 1] = hy - hr * 0.25
    f:poly(cv, pts, pc(s.cap))
  end
  local ex, ey = hx + hr * 0.35, hy - hr * 0.15
  if s.eyestripe then
    f:line(cv, {hx - hr * 0.9, ey + 0.005, ex, ey, hx + hr * 0.95, ey + 0.01}, 0.03, pc(s.eyestripe, 6))
  end
  if s.eyering then f:ellipse(cv, ex, ey, 0.03, 0.03, 0, {240, 240, 235}) end
  f:ellipse(cv, ex, ey, 0.019, 0.019, 0, pal.dark)
  f:ellipse(cv, ex + 0.006, ey - 0.006, 0.006, 0.006, 0, {250, 250, 250}, 0.8, false)
  draw_beak(cv, f, s, pal, hx, hy, hr)
  return f
end

local SKIES = {{{110, 160, 230}, {200, 225, 245}}, {{160, 170, 180}, {215, 215, 215}},
  {{240, 160, 110}, {250, 220, 170}}, {{80, 120, 190}, {170, 200, 230}}}
local FOLIAGE = {{70, 110, 50}, {40, 80, 40}, {110, 130, 60}, {90, 70, 40}, {140, 150, 80}, {60, 90, 70}}
local FLOWERS = {{200, 40, 60}, {240, 210, 60}, {150, 70, 170}, {250, 250, 240}, {240, 120, 40}, {60, 90, 200}}

local function background(cv, r, W, H)
  local kind = r:choice({"sky", "foliage", "foliage", "water"})
  if kind == "sky" then
    local s = r:choice(SKIES)
    cv:gradient(0, 0, r:uniform(-0.3, 0.3) * W, H, jitter(s[1], r, 12), jitter(s[2], r, 12))
    for _ = 1, r:int(0, 5) do
      local x, y = r:uniform(0, W), r:uniform(0, H * 0.7)
      for _ = 1, r:int(3, 6) do
        cv:ellipse(x + r:normal(0, W * 0.05), y + r:normal(0, H * 0.02), r:uniform(0.04, 0.12) * W,
          r:uniform(0.02, 0.05) * H, 0, {245, 245, 245}, r:uniform(0.3, 0.7))
      end
    end
    cv:blur(r:uniform(1, 4))
  elseif kind == "water" then
    local hz = r:uniform(0.3, 0.6) * H
    cv:gradient(0, 0, 0, hz, jitter({150, 180, 220}, r, 15), jitter({210, 220, 230}, r, 10))
    cv:rect(0, hz, W, H - hz, jitter({60, 100, 130}, r, 20))
    for _ = 1, r:int(10, 30) do
      local y = r:uniform(hz, H)
      local x = r:uniform(0, W)
      cv:line({x, y, x + r:uniform(10, 60), y}, r:uniform(1, 3), {200, 215, 230}, r:uniform(0.2, 0.5))
    end
    cv:blur(r:uniform(0.5, 2))
  else
    local c0, c1 = jitter(r:choice(FOLIAGE), r, 15), jitter(r:choice(FOLIAGE), r, 15)
    cv:gradient(r:uniform(0, W), 0, r:uniform(0, W), H, c0, c1)
    for _ = 1, r:int(40, 90) do
      local c = jitter(r:choice(FOLIAGE), r, 25)
      local s = r:uniform(0.01, 0.05) * (W + H)
      cv:ellipse(r:uniform(0, W), r:uniform(0, H), s, s * r:uniform(0.3, 0.6), r:uniform(0, math.pi), c, r:uniform(0.5, 1))
    end
    for _ = 1, r:int(0, 6) do
      local s = r:uniform(3, 8)
      cv:ellipse(r:uniform(0, W), r:uniform(0, H), s, s * r:uniform(0.6, 1), 0, jitter(r:choice(FLOWERS), r, 20))
    end
    cv:blur(r:uniform(1.5, 5))
  end
  -- branches and clutter shapes
  for _ = 1, r:int(0, 4) do
    local x, y = r:uniform(-0.1, 1.1) * W, r:uniform(0, 1) * H
    local pts = {x, y}
    for _ = 1, r:int(1, 3) do
      x, y = x + r:uniform(-0.5, 0.5) * W, y + r:uniform(-0.3, 0.3) * H
      local _n = #pts; pts[_n + 1], pts[_n + 2] = x, y
    end
    cv:line(pts, r:uniform(2, 10), jitter({90, 65, 40}, r, 20), r:uniform(0.6, 1))
  end
  for _ = 1, r:int(0, 4) do
    local x, y, s = r:uniform(0, W), r:uniform(0, H), r:uniform(0.03, 0.12) * W
    local pts = {}
    for k = 1, r:int(3, 6) do
      local t = k / 6 * 2 * math.pi + r:uniform(-0.3, 0.3)
      local _n = #pts; pts[_n + 1], pts[_n + 2] = x + s * math.cos(t) * r:uniform(0.5, 1), y + s * math.sin(t) * r:uniform(0.5, 1)
    end
    cv:polygon(pts, jitter(r:choice(FOLIAGE), r, 30), r:uniform(0.4, 0.9))
  end
  return kind
end

--- renders one image of species `spec`: returns the canvas and the bird's box {x, y, w, h}
-- (0-based pixel geometry, clipped to the image)
function M.render(spec, r, W, H)
  local cv = D.canvas(W, H, 3)
  background(cv, r, W, H)
  local L = r:uniform(0.4, 0.75) * math.min(W, H * 1.3)
  local flip = r:chance(0.5) and 1 or -1
  local angle = r:normal(0, 0.18)
  -- keep most of the bird inside: its body spans about -0.55 L .. 0.45 L
  local mx, my = math.min(0.45 * L, W / 2), math.min(0.25 * L, H / 2)
  local cx = r:uniform(mx, W - mx) + flip * 0.05 * L
  local cy = r:uniform(my, H - my)
  local perch_y
  if r:chance(0.6) then
    perch_y = cy + 0.2 * L
    local pts = {-0.05 * W, perch_y + r:uniform(-10, 10), cx + r:uniform(-0.2, 0.2) * L, perch_y,
      1.05 * W, perch_y + r:uniform(-30, 30)}
    cv:line(pts, r:uniform(0.03, 0.06) * L, jitter({95, 70, 45}, r, 15))
  end
  local f = draw_bird(cv, spec, r, cx, cy, L, angle, flip, 1, perch_y)
  -- occlusion: leaves or a branch in front of part of the bird
  if r:chance(0.3) then
    local ox, oy = r:uniform(f.x0, f.x1), r:uniform(f.y0, f.y1)
    if r:chance(0.5) then
      for _ = 1, r:int(3, 8) do
        local s = r:uniform(0.05, 0.12) * L
        cv:ellipse(ox + r:normal(0, 0.08 * L), oy + r:normal(0, 0.08 * L), s, s * 0.45, r:uniform(0, math.pi),
          jitter(r:choice(FOLIAGE), r, 20))
      end
    else
      local t = r:uniform(0, math.pi)
      local dx, dy = math.cos(t) * L, math.sin(t) * L
      cv:line({ox - dx, oy - dy, ox + dx, oy + dy}, r:uniform(0.03, 0.07) * L, jitter({90, 65, 40}, r, 20))
    end
  end
  -- lighting, colour cast, sensor noise
  local t = r:uniform(0, 2 * math.pi)
  local cast = r:uniform(0, 0.12)
  local tint = r:chance(0.5) and {1 + cast, 1, 1 - cast} or {1 - cast, 1, 1 + cast}
  cv:shade(W / 2 - math.cos(t) * W / 2, H / 2 - math.sin(t) * H / 2, W / 2 + math.cos(t) * W / 2,
    H / 2 + math.sin(t) * H / 2, r:uniform(0.65, 1.05), r:uniform(0.95, 1.3), tint)
  if r:chance(0.2) then cv:blur(r:uniform(0.6, 1.5)) end
  cv:noise(r:uniform(2, 10), r:next(), r:chance(0.5))
  local x0, y0 = clamp(f.x0, 0, W), clamp(f.y0, 0, H)
  local x1, y1 = clamp(f.x1, 0, W), clamp(f.y1, 0, H)
  return cv, {x = x0, y = y0, w = x1 - x0, h = y1 - y0}
end

-- ---- the dataset ------------------------------------------------------------------------
local DEFAULTS = {classes = 200, per_class = 60, size = "500x375", quality = 90, seed = 1,
  out = "data/synthetic", grayscale_fraction = 0.01, tgz = false, progress = true, train_fraction = 0.508,
  jobs = false}
M.defaults = DEFAULTS

local function parse_size(s)
  if type(s) == "table" then return s[1], s[2] end
  local w, h = tostring(s):match("^(%d+)x(%d+)$")
  if not w then error(("aviary.data.synthetic: size must be WxH (e.g. 500x375), got %q"):format(tostring(s)), 3) end
  return tonumber(w), tonumber(h)
end

local function sh(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function write_file(path, lines)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(table.concat(lines, "\n"), #lines > 0 and "\n" or "")
  f:close()
  assert(os.rename(tmp, path))
end

-- the options after defaults and checks
local function resolve(opts, fn)
  opts = opts or {}
  for k in pairs(opts) do
    if DEFAULTS[k] == nil then
      local names = {}
      for n in pairs(DEFAULTS) do names[#names + 1] = n end
      table.sort(names)
      error(("%s: unknown option %q (valid: %s)"):format(fn, k, table.concat(names, ", ")), 3)
    end
  end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  o.W, o.H = parse_size(o.size)
  o.classes, o.per_class = math.tointeger(o.classes), math.tointeger(o.per_class)
  if not o.classes or o.classes < 1 or o.classes > 999 then error(fn .. ": classes must be an integer in 1..999", 3) end
  if not o.per_class or o.per_class < 1 or o.per_class > 9999 then error(fn .. ": per_class must be an integer in 1..9999", 3) end
  if not math.tointeger(o.seed) then error(fn .. ": seed must be an integer", 3) end
  o.seed = math.tointeger(o.seed)
  return o
end

-- draws and saves image i of class c (global id); returns its box
local function make_image(o, root, c, i, id)
  local bare = c.name:match("^%d+%.(.*)$")
  local r = M.rng(o.seed, c.id, i)
  local w = math.floor(o.W * r:uniform(0.85, 1.15) + 0.5)
  local h = math.floor(o.H * r:uniform(0.85, 1.15) + 0.5)
  if r:chance(0.15) then w, h = h, w end
  local gray = r:chance(o.grayscale_fraction)
  local cv, box = M.render(c.spec, r, w, h)
  if gray then
    local g = cv:to_gray()
    cv:close()
    cv = g
  end
  local rel = ("%s/%s_%04d_%d.jpg"):format(c.name, bare, i, id)
  cv:save(root .. "/images/" .. rel, o.quality)
  cv:close()
  return rel, box
end

local function box_line(id, b) return ("%d %.1f %.1f %.1f %.1f"):format(id, b.x, b.y, b.w, b.h) end

--- a worker process: draws the images whose (id - 1) % n == k and prints one
-- "id x y w h" line for each (used by generate with jobs > 1)
function M._worker(opts, k, n)
  local o = resolve(opts, "aviary.data.synthetic._worker")
  local root = o.out .. "/CUB_200_2011"
  local id = 0
  for _, c in ipairs(M.classes(o.classes, o.seed)) do
    for i = 1, o.per_class do
      id = id + 1
      if (id - 1) % n == k then
        local _, box = make_image(o, root, c, i, id)
        io.stdout:write(box_line(id, box), "\n")
        io.stdout:flush()
      end
    end
  end
end

local function host_program()
  local src = debug.getinfo(1, "S").source
  local root = src:match("^@(.*)/lua/aviary/data/synthetic%.lua$")
  if root then
    local p = root .. "/bin/aviary"
    local f = io.open(p)
    if f then f:close(); return p end
  end
  return arg and arg[-1]
end

local function serialize(t)
  local parts = {}
  for k, v in pairs(t) do
    if type(v) == "string" then parts[#parts + 1] = ("[%q]=%q"):format(k, v)
    elseif type(v) == "number" or type(v) == "boolean" then parts[#parts + 1] = ("[%q]=%s"):format(k, tostring(v)) end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function default_jobs()
  local p = io.popen("nproc 2>/dev/null")
  local n = p and tonumber(p:read("l") or "") or 1
  if p then p:close() end
  return math.max(1, math.min(n or 1, 8))
end

--- writes the dataset; returns {root=, images=, classes=, train=, test=, seconds=, tgz=}
function M.generate(opts)
  local o = resolve(opts, "aviary.data.synthetic.generate")
  local nc, per = o.classes, o.per_class
  local root = o.out .. "/CUB_200_2011"
  os.execute("mkdir -p " .. sh(root .. "/images"))
  local classes = M.classes(nc, o.seed)
  local images, labels, split, boxes, classes_txt = {}, {}, {}, {}, {}
  local total = nc * per
  local bar = o.progress and require("aviary.progress").bar(total, {label = "drawing", unit = "img"})
  local t0 = core.clock()
  local id, ntrain = 0, 0
  local items = {}
  for _, c in ipairs(classes) do
    classes_txt[#classes_txt + 1] = ("%d %s"):format(c.id, c.name)
    os.execute("mkdir -p " .. sh(root .. "/images/" .. c.name))
    local bare = c.name:match("^%d+%.(.*)$")
    -- the split: a fixed fraction of each class trains, chosen by the seed
    local order = {}
    for i = 1, per do order[i] = i end
    local sr = M.rng(o.seed, c.id, 104729)
    for i = per, 2, -1 do
      local j = sr:int(1, i)
      order[i], order[j] = order[j], order[i]
    end
    local is_train = {}
    local ntr = math.max(per > 1 and 1 or 0, math.floor(per * o.train_fraction + 0.5))
    for i = 1, ntr do is_train[order[i]] = true end
    for i = 1, per do
      id = id + 1
      items[id] = {c = c, i = i}
      images[id] = ("%d %s/%s_%04d_%d.jpg"):format(id, c.name, bare, i, id)
      labels[id] = ("%d %d"):format(id, c.id)
      split[id] = ("%d %d"):format(id, is_train[i] and 1 or 0)
      if is_train[i] then ntrain = ntrain + 1 end
    end
  end
  local jobs = math.tointeger(o.jobs) or default_jobs()
  local host = jobs > 1 and host_program()
  if host and total >= 4 * jobs then
    local wopts = {}
    for k, v in pairs(o) do if DEFAULTS[k] ~= nil and k ~= "jobs" then wopts[k] = v end end
    wopts.progress = false
    local pipes = {}
    for k = 0, jobs - 1 do
      local code = ("require('aviary.data.synthetic')._worker(%s, %d, %d)"):format(serialize(wopts), k, jobs)
      pipes[#pipes + 1] = assert(io.popen(sh(host) .. " -e " .. sh(code), "r"))
    end
    local done = 0
    while #pipes > 0 do
      for q = #pipes, 1, -1 do
        local line = pipes[q]:read("l")
        if line then
          local n = tonumber(line:match("^(%d+) "))
          if n then boxes[n] = line; done = done + 1; if bar then bar:update(1) end end
        else
          local ok = pipes[q]:close()
          table.remove(pipes, q)
          if not ok then
            for _, p in ipairs(pipes) do p:close() end
            error("aviary.data.synthetic.generate: a worker process failed (see its error above)", 2)
          end
        end
      end
    end
    if done ~= total then error(("aviary.data.synthetic.generate: workers drew %d of %d images"):format(done, total), 2) end
  else
    for n, it in ipairs(items) do
      local _, box = make_image(o, root, it.c, it.i, n)
      boxes[n] = box_line(n, box)
      if bar then bar:update(1) end
    end
  end
  if bar then bar:finish() end
  local secs = core.clock() - t0
  write_file(root .. "/images.txt", images)
  write_file(root .. "/image_class_labels.txt", labels)
  write_file(root .. "/train_test_split.txt", split)
  write_file(root .. "/bounding_boxes.txt", boxes)
  write_file(root .. "/classes.txt", classes_txt)
  write_file(root .. "/README", {
    "Synthetic CUB-200-2011-format dataset drawn by aviary (lua/aviary/data/synthetic.lua).",
    ("classes=%d per_class=%d size=%dx%d quality=%d seed=%d grayscale_fraction=%g"):format(
      nc, per, o.W, o.H, o.quality, o.seed, o.grayscale_fraction)})
  if o.tgz then
    local ok = os.execute(("tar czf %s -C %s CUB_200_2011"):format(sh(o.out .. "/CUB_200_2011.tgz.tmp"), sh(o.out)))
    if not ok then error("aviary.data.synthetic.generate: tar czf failed for " .. o.out .. "/CUB_200_2011.tgz", 2) end
    assert(os.rename(o.out .. "/CUB_200_2011.tgz.tmp", o.out .. "/CUB_200_2011.tgz"))
  end
  return {root = root, images = total, classes = nc, train = ntrain, test = total - ntrain, seconds = secs,
    tgz = o.tgz and (o.out .. "/CUB_200_2011.tgz") or nil}
end

return M
