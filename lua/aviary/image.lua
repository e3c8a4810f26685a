--- aviary.image: reading, writing and transforming images.
--   local image = require "aviary.image"
--   local img = image.load("data/cub/001.jpg")            -- uint8 tensor 3 x H x W
--   img = image.resize(img, 256)                           -- smaller edge 256, antialiased like PIL
--   img = image.center_crop(img, 224)
--   local x = image.to_float(img, {mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD})
-- Images are uint8 tensors C x H x W (torchvision.io's layout), C = 1 (gray),
-- 3 (RGB) or 4 (RGBA). Pixel coordinates (top, left) are 0-based offsets, as
-- in torchvision.transforms.functional; sizes are given height first, as
-- torchvision's {h, w}. JPEG (libjpeg-turbo) and PNG (libpng) are detected by
-- their signature, not their name. EXIF orientation is ignored (as
-- torchvision.io.decode_jpeg and PIL without ImageOps.exif_transpose).
-- The work is done in C (av._image); see docs/data.md#images.
local av = require "aviary"

local C = av._image
local image = {}

--- ImageNet's per-channel mean and standard deviation (torchvision's), for to_float
image.IMAGENET_MEAN = {0.485, 0.456, 0.406}
image.IMAGENET_STD = {0.229, 0.224, 0.225}

local function check_opts(who, opts, valid)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(("%s: expected an options table, got %s"):format(who, type(opts)), 3) end
  for k in pairs(opts) do
    if not valid[k] then
      local names = {}
      for n in pairs(valid) do names[#names + 1] = n end
      table.sort(names)
      local near = require("aviary.util")
      local hint = ""
      if type(near.nearest) == "function" then
        local s = near.nearest(tostring(k), names)
        if s then hint = (" (did you mean '%s'?)"):format(s) end
      end
      error(("%s: unknown option '%s'%s; valid: %s"):format(who, tostring(k), hint, table.concat(names, ", ")), 3)
    end
  end
  return opts
end

local function check_path(who, path)
  if type(path) ~= "string" then error(("%s: expected a file path (string), got %s"):format(who, type(path)), 3) end
end

local function check_img(who, img)
  if not av.is_tensor(img) then
    error(("%s: expected an image (uint8 tensor C x H x W), got %s"):format(who, type(img)), 3)
  end
end

-- size: a number (the smaller edge, aspect ratio kept) or {h, w}; returns h, w
local function out_size(who, size, h, w)
  if type(size) == "number" then
    if size < 1 or size ~= math.floor(size) then error(who .. ": size must be a positive integer", 3) end
    if h <= w then return size, math.floor(size * w / h) end
    return math.floor(size * h / w), size
  elseif type(size) == "table" and #size == 2 then
    return size[1], size[2]
  end
  error(("%s: size must be a number (smaller edge) or {h, w}, got %s"):format(who, type(size)), 3)
end

local decode_opts = {max_pixels = true, min_size = true, channels = true}

--- image.load(path, {max_pixels=178956970, min_size={w, h}, channels=3}) -> uint8 tensor C x H x W.
-- JPEG or PNG by signature. channels: 3 RGB (gray, CMYK, palette converted; alpha dropped),
-- 1 gray, 4 RGBA, 0 as stored (1 or 3). min_size lets libjpeg-turbo decode a JPEG at 1/2, 1/4
-- or 1/8 scale (DCT-domain, much faster) while keeping at least w x h. Files declaring more
-- than max_pixels pixels are refused before any memory is allocated.
function image.load(path, opts)
  check_path("image.load", path)
  return C.load(path, check_opts("image.load", opts, decode_opts))
end

--- image.decode(bytes, {max_pixels=, min_size=, channels=}) -> uint8 tensor C x H x W, from a JPEG or PNG in a string
function image.decode(bytes, opts)
  if type(bytes) ~= "string" then error("image.decode: expected the file's bytes as a string, got " .. type(bytes), 2) end
  return C.decode(bytes, check_opts("image.decode", opts, decode_opts))
end

--- image.probe(path) -> width, height, channels as stored (reads only the header).
-- Channels: JPEG 1 gray, 3 colour, 4 CMYK; PNG 1 gray, 2 gray+alpha, 3 RGB or palette, 4 RGBA.
function image.probe(path)
  check_path("image.probe", path)
  return C.probe(path)
end

--- image.save(img, path, {quality=90}) -- writes .jpg/.jpeg (4:2:0) or .png (by extension), atomically.
-- img: uint8 C x H x W, or float in [0, 1] (rounded); C = 1, 3 or 4 (JPEG drops alpha).
function image.save(img, path, opts)
  check_img("image.save", img)
  check_path("image.save", path)
  return C.save(img, path, check_opts("image.save", opts, {quality = true}))
end

local interp_opts = {interpolation = true}

--- image.resize(img, size, {interpolation='bilinear'|'bicubic'|'nearest'}) -> resized uint8 image.
-- size: a number (the smaller edge becomes size, aspect ratio kept, as torchvision's Resize) or {h, w}.
-- Antialiased on downscale; bit-exact with PIL's Image.resize.
function image.resize(img, size, opts)
  check_img("image.resize", img)
  local h, w = out_size("image.resize", size, img:size(-2), img:size(-1))
  return C.resize(img, h, w, check_opts("image.resize", opts, interp_opts))
end

--- image.crop(img, top, left, h, w) -> the h x w region at 0-based pixel offset (top, left); outside is 0
function image.crop(img, top, left, h, w)
  check_img("image.crop", img)
  return C.crop(img, top, left, h, w)
end

--- image.center_crop(img, size) -> the central crop; size a number or {h, w} (torchvision's rounding)
function image.center_crop(img, size)
  check_img("image.center_crop", img)
  local ch, cw
  if type(size) == "number" then ch, cw = size, size
  elseif type(size) == "table" and #size == 2 then ch, cw = size[1], size[2]
  else error("image.center_crop: size must be a number or {h, w}", 2) end
  local H, W = img:size(-2), img:size(-1)
  local top = math.floor((H - ch) / 2 + 0.5)
  local left = math.floor((W - cw) / 2 + 0.5)
  return C.crop(img, top, left, ch, cw)
end

--- image.resized_crop(img, top, left, h, w, size, {interpolation=}) -> crop then resize in one pass.
-- The box (0-based, may be fractional) is resampled as PIL's resize(box=...); size a number or {h, w}.
function image.resized_crop(img, top, left, h, w, size, opts)
  check_img("image.resized_crop", img)
  local oh, ow
  if type(size) == "number" then oh, ow = size, size
  elseif type(size) == "table" and #size == 2 then oh, ow = size[1], size[2]
  else error("image.resized_crop: size must be a number or {h, w}", 2) end
  return C.resized_crop(img, top, left, h, w, oh, ow, check_opts("image.resized_crop", opts, interp_opts))
end

--- image.hflip(img) -> the image mirrored left-right
function image.hflip(img)
  check_img("image.hflip", img)
  return C.hflip(img)
end

--- image.vflip(img) -> the image flipped upside down
function image.vflip(img)
  check_img("image.vflip", img)
  return C.vflip(img)
end

--- image.to_float(img, {mean=, std=}) -> float32 C x H x W: img / 255, then (x - mean[c]) / std[c].
-- Bit-exact with torchvision's to_tensor + normalize; e.g. {mean = image.IMAGENET_MEAN, std = image.IMAGENET_STD}.
function image.to_float(img, opts)
  check_img("image.to_float", img)
  return C.to_float(img, check_opts("image.to_float", opts, {mean = true, std = true}))
end

--- image.make_grid(images, {nrow=, captions=, padding=}) -> one image tiling the images (aviary.draw)
function image.make_grid(...)
  return require("aviary.draw").make_grid(...)
end

--- image.draw_box(img, box, {...}) -> draws a rectangle (aviary.draw)
function image.draw_box(...)
  return require("aviary.draw").draw_box(...)
end

return image
