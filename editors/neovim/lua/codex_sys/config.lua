-- Options of the codex-sys plugin: defaults, validation, merging.
local M = {}

M.defaults = {
  -- The language server: `codex-sys lsp` speaks LSP over stdio.
  cmd = { 'codex-sys', 'lsp' },
  -- Extra environment for the server process (merged into Neovim's), e.g. { CODEX_SYS_HOME = '…' }.
  cmd_env = nil,
  -- Same shape as the server's settings (docs/lsp.md): runner = {address, token}, model,
  -- snapshot = {exclude, maxFiles, maxBytes}. Sent as initializationOptions and answered to
  -- workspace/configuration (section "codexSys").
  settings = {},
  -- A buffer's project root is the nearest folder above it holding one of these; none: the
  -- current directory (or the file's own folder when the file is outside it).
  root_markers = { '.git', '.hg', '.svn' },
  -- Attach to buffers of these filetypes only; nil: every buffer backed by a file.
  filetypes = nil,
  -- Start the client and attach it on FileType/BufReadPost/BufNewFile.
  autostart = true,
  -- Echo the server's work-done progress (task states, tool calls) in the command line.
  progress = true,
  -- Ex command that opens the window for :CodexDiff.
  diff_split = 'botright split',
  -- Called as on_attach(client, bufnr) when the client attaches to a buffer.
  on_attach = nil,
  -- Merged (deeply) into the client capabilities the plugin advertises.
  capabilities = nil,
  -- Name of the client (shows in :LspInfo-like listings and messages).
  name = 'codex-sys',
}

-- Every option, the ones whose default is nil included.
M.known = {
  cmd = true, cmd_env = true, settings = true, root_markers = true, filetypes = true, autostart = true,
  progress = true, diff_split = true, on_attach = true, capabilities = true, name = true,
}

local function check(opts)
  vim.validate({
    cmd = { opts.cmd, 'table' },
    cmd_env = { opts.cmd_env, 'table', true },
    settings = { opts.settings, 'table' },
    root_markers = { opts.root_markers, 'table' },
    filetypes = { opts.filetypes, 'table', true },
    autostart = { opts.autostart, 'boolean' },
    progress = { opts.progress, 'boolean' },
    diff_split = { opts.diff_split, 'string' },
    on_attach = { opts.on_attach, 'function', true },
    capabilities = { opts.capabilities, 'table', true },
    name = { opts.name, 'string' },
  })
  if #opts.cmd == 0 then
    error('codex_sys: cmd must not be empty', 0)
  end
end

-- Settings that are lists; every other table of the settings is an object.
local list_settings = { exclude = true }

--- A copy of `settings` that encodes as the server expects: Neovim's JSON encoder writes an empty Lua
--- table as `[]`, so empty objects are marked as such (vim.empty_dict()).
function M.settings_for_json(settings, key)
  if type(settings) ~= 'table' then
    return settings
  end
  if next(settings) == nil then
    return list_settings[key] and {} or vim.empty_dict()
  end
  local out = {}
  for k, v in pairs(settings) do
    out[k] = M.settings_for_json(v, k)
  end
  return out
end

--- The options in effect: the defaults, then `user` on top (tables are merged key by key, lists
--- replaced whole).
function M.merge(user)
  user = user or {}
  local opts = vim.deepcopy(M.defaults)
  for key, value in pairs(user) do
    if not M.known[key] then
      error(string.format('codex_sys: unknown option %q', key), 0)
    end
    if key == 'settings' then
      opts.settings = vim.tbl_deep_extend('force', opts.settings, value)
    else
      opts[key] = value
    end
  end
  check(opts)
  opts.settings = M.settings_for_json(opts.settings)
  return opts
end

return M
