-- Test helpers loaded into the Neovim under test (`:luafile`). They stand in for the person at the
-- keyboard (vim.ui.input / vim.ui.select answers) and record what the person would have seen.
local T = {
  notifications = {}, -- {msg, level}
  selects = {}, -- {prompt, items = {formatted}, raw = {items}}
  inputs = {}, -- prompts asked
  answers = {}, -- queue of answers for vim.ui.input (a string, or false for cancel)
  choose = nil, -- string: Lua pattern the chosen item's text must match; nil: cancel
}
_G.codex_test = T

local notify = vim.notify
vim.notify = function(msg, level, opts)
  table.insert(T.notifications, { msg = msg, level = level or vim.log.levels.INFO })
  return notify(msg, level, opts)
end

vim.ui.input = function(opts, on_confirm)
  table.insert(T.inputs, opts and opts.prompt or '')
  local answer = table.remove(T.answers, 1)
  if answer == false or answer == nil then
    on_confirm(nil)
  else
    on_confirm(answer)
  end
end

vim.ui.select = function(items, opts, on_choice)
  local format = opts.format_item or tostring
  local record = { prompt = opts.prompt, kind = opts.kind, items = {}, raw = items }
  for _, item in ipairs(items) do
    local text = format(item) -- may return more than one value (gsub)
    table.insert(record.items, text)
  end
  table.insert(T.selects, record)
  local pattern = type(T.choose) == 'table' and table.remove(T.choose, 1) or T.choose
  if pattern then
    for i, text in ipairs(record.items) do
      if text:match(pattern) then
        return on_choice(items[i], i)
      end
    end
  end
  on_choice(nil, nil)
end

--- The menus shown so far, as {prompt, kind, items = {texts}}.
function T.menus()
  return vim.tbl_map(function(record)
    return { prompt = record.prompt, kind = record.kind, items = record.items }
  end, T.selects)
end

--- The code actions the last vim.ui.select of kind "codeaction" offered, as plain data.
function T.last_code_actions()
  for i = #T.selects, 1, -1 do
    local record = T.selects[i]
    if record.kind == 'codeaction' then
      local out = {}
      for _, tuple in ipairs(record.raw) do
        local action = tuple[2]
        table.insert(out, {
          title = action.title, kind = action.kind, isPreferred = action.isPreferred,
          disabled = action.disabled, command = action.command, edit = action.edit,
        })
      end
      return out
    end
  end
  return nil
end

function T.bufnr(path)
  return vim.uri_to_bufnr(vim.uri_from_fname(path))
end

--- The buffer's lines, loading the buffer if it is not.
function T.lines(path)
  local bufnr = T.bufnr(path)
  if not vim.api.nvim_buf_is_loaded(bufnr) then
    vim.fn.bufload(bufnr)
  end
  return vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
end

--- The codex-sys diagnostics of a file, as plain data sorted by line.
function T.diagnostics(path)
  local out = {}
  for _, d in ipairs(vim.diagnostic.get(T.bufnr(path))) do
    local lsp = d.user_data and d.user_data.lsp or {}
    table.insert(out, {
      lnum = d.lnum, end_lnum = d.end_lnum, message = d.message, source = d.source, code = d.code,
      severity = d.severity, data = lsp.data,
    })
  end
  table.sort(out, function(a, b)
    return a.lnum < b.lnum
  end)
  return out
end

--- The client the helpers talk through: `T.client_id` when set (a client started without the plugin),
--- else the plugin's client of the current buffer.
function T.client()
  if T.client_id then
    return vim.lsp.get_client_by_id(T.client_id)
  end
  return require('codex_sys').client(0)
end

--- Starts a client without the plugin (plain vim.lsp.start_client), attached to the current buffer.
function T.start_plain(config)
  T.client_id = vim.lsp.start_client(config)
  vim.lsp.buf_attach_client(0, T.client_id)
  return T.client_id
end

--- workspace/executeCommand through T.client(), waiting for the answer.
function T.exec_sync(command, argument, timeout_ms)
  local client = T.client()
  vim.wait(timeout_ms or 20000, function()
    return client.initialized
  end, 10)
  local params = { command = command, arguments = { argument == nil and vim.empty_dict() or argument } }
  local response, err = client.request_sync('workspace/executeCommand', params, timeout_ms or 20000, 0)
  if not response then
    return { error = { message = tostring(err) } }
  end
  return { result = response.result, error = response.err }
end

--- Results of the plugin's commands recorded so far, for one command (nil, or vim.NIL as a nil from
--- the RPC arrives: every command).
function T.results(command)
  if command == vim.NIL then
    command = nil
  end
  local out = {}
  for _, r in ipairs(require('codex_sys.state').results) do
    if command == nil or r.command == command then
      table.insert(out, { command = r.command, arguments = r.arguments, result = r.result, error = r.error })
    end
  end
  return out
end

function T.messages()
  return vim.api.nvim_exec('messages', true)
end

return T
