-- Every exposed function and method has a doc line for the REPL's `? name`,
-- and every doc line names something that exists.
local av = require "aviary"
local doc = require "aviary.doc"

describe("doc lines", function()
  it("cover every module function", function()
    local missing = {}
    for k, v in pairs(av) do
      if type(v) == "function" and not doc["av." .. k] then missing[#missing + 1] = "av." .. k end
    end
    table.sort(missing)
    assert.equal(#missing, 0, "undocumented: " .. table.concat(missing, ", "))
  end)
  it("cover every tensor method", function()
    local missing = {}
    for k, v in pairs(av.Tensor) do
      if type(v) == "function" and not doc["Tensor:" .. k] then missing[#missing + 1] = "Tensor:" .. k end
    end
    table.sort(missing)
    assert.equal(#missing, 0, "undocumented: " .. table.concat(missing, ", "))
  end)
  it("name only things that exist", function()
    local stale = {}
    for k in pairs(doc) do
      local kind, name = k:match("^(%a+)[.:](.+)$")
      local where = kind == "av" and av or av.Tensor
      if type(where[name]) ~= "function" then stale[#stale + 1] = k end
    end
    table.sort(stale)
    assert.equal(#stale, 0, "documented but missing: " .. table.concat(stale, ", "))
  end)
end)
