-- One language client per project root: find the root of a buffer, start or reuse the client,
-- attach it to buffers, wait for it to be initialized.
local config = require('codex_sys.config')
local handlers = require('codex_sys.handlers')

local M = {}

-- root folder -> client id
local by_root = {}

local function is_dir(path)
  local stat = vim.loop.fs_stat(path)
  return stat ~= nil and stat.type == 'directory'
end

local function exists(path)
  return vim.loop.fs_stat(path) ~= nil
end

local function normalize(path)
  path = vim.fn.fnamemodify(path, ':p')
  if #path > 1 then
    path = path:gsub('/+$', '')
  end
  return path
end

local function is_under(path, folder)
  return path == folder or path:sub(1, #folder + 1) == folder .. '/'
end

--- Whether the plugin handles this buffer: a normal buffer backed by a local file (named, not a
--- `scheme://` buffer), of one of the configured filetypes when there is such a list.
function M.eligible(bufnr, opts)
  if not vim.api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= '' then
    return false
  end
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == '' or name:match('^%a[%w+.-]*://') then
    return false
  end
  if opts.filetypes then
    return vim.tbl_contains(opts.filetypes, vim.bo[bufnr].filetype)
  end
  return true
end

--- The project root of a path (a file or a folder): the nearest folder at or above it holding a
--- root marker; else the current directory when the path is inside it; else the path's folder. The
--- second value says which: 'marker', 'cwd' or 'folder'.
function M.root_of(path, markers)
  local cwd = normalize(vim.fn.getcwd())
  if path == nil or path == '' then
    return cwd, 'cwd'
  end
  path = normalize(path)
  local dir = is_dir(path) and path or vim.fn.fnamemodify(path, ':h')
  local probe = dir
  while true do
    for _, marker in ipairs(markers) do
      if exists(probe .. '/' .. marker) then
        return probe, 'marker'
      end
    end
    local parent = vim.fn.fnamemodify(probe, ':h')
    if parent == probe then
      break
    end
    probe = parent
  end
  if is_under(dir, cwd) then
    return cwd, 'cwd'
  end
  return dir, 'folder'
end

function M.root_of_buffer(bufnr, opts)
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == '' or name:match('^%a[%w+.-]*://') then
    name = nil
  end
  return M.root_of(name, opts.root_markers)
end

local function live(client_id)
  local client = client_id and vim.lsp.get_client_by_id(client_id)
  if client and not client.is_stopped() then
    return client
  end
  return nil
end

local function capabilities(opts)
  local caps = vim.lsp.protocol.make_client_capabilities()
  -- Neovim 0.7 answers workspace/configuration (from `settings`) without advertising it.
  caps.workspace.configuration = true
  caps.workspace.didChangeConfiguration = { dynamicRegistration = false }
  if opts.capabilities then
    caps = vim.tbl_deep_extend('force', caps, opts.capabilities)
  end
  return caps
end

--- The client of a root, started when there is none.
function M.for_root(root, opts)
  local client = live(by_root[root])
  if client then
    return client
  end
  local settings = vim.deepcopy(opts.settings)
  local id = vim.lsp.start_client({
    name = opts.name,
    cmd = opts.cmd,
    cmd_env = opts.cmd_env,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ':t') } },
    init_options = settings,
    settings = { codexSys = settings },
    capabilities = capabilities(opts),
    handlers = handlers.for_client(function()
      return require('codex_sys').options or opts
    end),
    on_attach = opts.on_attach,
    on_exit = function(code, signal, client_id)
      if by_root[root] == client_id then
        by_root[root] = nil
      end
      if code ~= 0 and signal ~= 15 then
        vim.schedule(function()
          vim.notify(string.format('codex-sys: the language server exited (code %d, signal %d); see :lua '
            .. 'print(vim.lsp.get_log_path())', code, signal), vim.log.levels.ERROR)
        end)
      end
    end,
  })
  if not id then
    error(string.format('codex-sys: could not start %s', table.concat(opts.cmd, ' ')), 0)
  end
  by_root[root] = id
  return vim.lsp.get_client_by_id(id)
end

--- Attach the client of the buffer's root to the buffer (starting it if needed). Returns the client,
--- or nil when the buffer is not one the plugin handles. With `in_project_only`, a file outside any
--- project and outside the current directory (/etc/hosts) gets no client.
function M.attach(bufnr, opts, in_project_only)
  if not M.eligible(bufnr, opts) then
    return nil
  end
  local root, how = M.root_of_buffer(bufnr, opts)
  if in_project_only and how == 'folder' and not live(by_root[root]) then
    return nil
  end
  local client = M.for_root(root, opts)
  vim.lsp.buf_attach_client(bufnr, client.id)
  return client
end

--- The client for commands run from `bufnr`: the one of its root (the current directory for a
--- buffer without a file), attached to the buffer when the buffer is eligible.
function M.for_buffer(bufnr, opts)
  return M.attach(bufnr, opts) or M.for_root(M.root_of_buffer(bufnr, opts), opts)
end

-- client id -> functions waiting for the client to be initialized, in the order they came
local waiting = {}

--- Calls fn(client) once the client is initialized (at once if it already is and nothing waits before
--- it): commands given while the server starts are sent in the order they were given. Reports a client
--- that does not come up within `timeout_ms`.
function M.when_ready(client, fn, timeout_ms)
  local queue = waiting[client.id]
  if queue then
    table.insert(queue, fn)
    return
  end
  if client.initialized then
    return fn(client)
  end
  queue = { fn }
  waiting[client.id] = queue
  local deadline = vim.loop.now() + (timeout_ms or 30000)
  local function poll()
    if client.is_stopped() then
      waiting[client.id] = nil
      vim.notify('codex-sys: the language server stopped before it was ready', vim.log.levels.ERROR)
    elseif client.initialized then
      waiting[client.id] = nil
      for _, waiting_fn in ipairs(queue) do
        waiting_fn(client)
      end
    elseif vim.loop.now() > deadline then
      waiting[client.id] = nil
      vim.notify('codex-sys: the language server did not answer initialize in time', vim.log.levels.ERROR)
    else
      vim.defer_fn(poll, 20)
    end
  end
  vim.defer_fn(poll, 20)
end

--- Every live client of the plugin, as {root = client}.
function M.all()
  local out = {}
  for root, id in pairs(by_root) do
    local client = live(id)
    if client then
      out[root] = client
    end
  end
  return out
end

--- Sends new settings to every client: workspace/didChangeConfiguration; the server then reads them
--- back through workspace/configuration.
function M.update_settings(settings)
  for _, client in pairs(M.all()) do
    client.config.settings = { codexSys = config.settings_for_json(settings) }
    client.notify('workspace/didChangeConfiguration', { settings = client.config.settings })
  end
end

--- Stops every client of the plugin.
function M.stop_all()
  for root, client in pairs(M.all()) do
    client.stop()
    by_root[root] = nil
  end
end

return M
