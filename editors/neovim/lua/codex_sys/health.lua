-- :checkhealth codex_sys
local M = {}

local health = vim.health or require('health')
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local error = health.error or health.report_error
local info = health.info or health.report_info

function M.check()
  start('codex-sys')
  if vim.fn.has('nvim-0.7.2') == 1 then
    ok('Neovim ' .. tostring(vim.version().major) .. '.' .. vim.version().minor .. '.' .. vim.version().patch)
  else
    error('Neovim 0.7.2 or later is needed')
  end
  local codex = require('codex_sys')
  if not codex.options then
    warn('require("codex_sys").setup{} has not run yet', { 'Call it from your init.lua' })
    return
  end
  local exe = codex.options.cmd[1]
  if vim.fn.executable(exe) == 1 then
    ok(string.format('%s: %s', exe, vim.fn.exepath(exe)))
  else
    error(string.format('%s is not executable', exe),
      { 'pip install codex-sys, or give the full path: setup{ cmd = {"/path/to/codex-sys", "lsp"} }' })
  end
  local any = false
  for root, client in pairs(codex.clients()) do
    any = true
    info(string.format('client %d for %s (%s)', client.id, root, client.initialized and 'ready' or 'starting'))
  end
  if not any then
    info('no client running (one starts when a file of a project is opened)')
  end
end

return M
