-- codex-sys for Neovim (>= 0.7.2): a thin shell over the `codex-sys lsp` language server and
-- Neovim's built-in LSP client. See :help codex_sys.
local config = require('codex_sys.config')
local clients = require('codex_sys.client')
local handlers = require('codex_sys.handlers')
local state = require('codex_sys.state')

local M = {}

local levels = vim.log.levels
local notify = handlers.notify
local group = nil

--- The options in effect (nil before setup).
M.options = nil

local function options()
  if not M.options then
    M.setup()
  end
  return M.options
end

local function attach_if_eligible(bufnr)
  local opts = options()
  if not opts.autostart or not clients.eligible(bufnr, opts) then
    return
  end
  local ok, err = pcall(clients.attach, bufnr, opts, true)
  if not ok then
    vim.notify(tostring(err), levels.ERROR)
  end
end

--- Configures the plugin; may be called again to change options (new clients use them; running ones
--- get the new settings through workspace/didChangeConfiguration).
function M.setup(user)
  local first = M.options == nil
  M.options = config.merge(user)
  if not first then
    clients.update_settings(M.options.settings)
  end
  group = vim.api.nvim_create_augroup('codex_sys', { clear = true })
  vim.api.nvim_create_autocmd({ 'FileType', 'BufReadPost', 'BufNewFile' }, {
    group = group,
    callback = function(args)
      attach_if_eligible(args.buf)
    end,
  })
  if M.options.autostart then
    for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(bufnr) then
        attach_if_eligible(bufnr)
      end
    end
  end
  return M
end

--- The client for commands run from `bufnr` (default: current buffer), started if needed.
function M.client(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  return clients.for_buffer(bufnr, options())
end

--- Every running client of the plugin, as {root = client}.
function M.clients()
  return clients.all()
end

--- Sends workspace/executeCommand `command` with `argument` (one object) through the client of
--- `bufnr`, once it is initialized. `callback(err, result)` is called after the result was reported to
--- the user (or instead of the report, when `opts.quiet`).
function M.execute(command, argument, callback, opts)
  opts = opts or {}
  local bufnr = opts.bufnr or vim.api.nvim_get_current_buf()
  local ok, client = pcall(M.client, bufnr)
  if not ok then
    vim.notify(tostring(client), levels.ERROR)
    return
  end
  clients.when_ready(client, function(ready)
    local params = { command = command, arguments = { argument } }
    local sent = ready.request('workspace/executeCommand', params, function(err, result, ctx)
      if not opts.quiet then
        handlers.report(err, result, params, ctx.client_id)
      elseif err then
        handlers.notify_server(err.message or tostring(err), levels.ERROR)
      end
      if callback then
        callback(err, result)
      end
    end, bufnr)
    if not sent then
      notify('the language server is not running', levels.ERROR)
    end
  end)
end

-- ---- helpers for ranges ------------------------------------------------------------------------------

local function utf16_index(line, byte_index)
  local _, utf16 = vim.str_utfindex(line, byte_index)
  return utf16
end

--- The LSP range of lines line1..line2 (1-based) of `bufnr`: whole lines, or the characters of the last
--- charwise Visual selection when it spans exactly those lines.
function M.selection_range(bufnr, line1, line2)
  local lines = vim.api.nvim_buf_get_lines(bufnr, line1 - 1, line2, false)
  local first, last = lines[1] or '', lines[#lines] or ''
  local start_char, end_char = 0, utf16_index(last, #last)
  if bufnr == vim.api.nvim_get_current_buf() and vim.fn.visualmode() == 'v' then
    local vstart, vend = vim.fn.getpos("'<"), vim.fn.getpos("'>")
    if vstart[2] == line1 and vend[2] == line2 then
      start_char = utf16_index(first, math.min(vstart[3] - 1, #first))
      local last_col = math.min(vend[3], #last)
      if last_col >= 1 then
        local char = vim.fn.strcharpart(last:sub(last_col), 0, 1)
        end_char = utf16_index(last, last_col - 1 + #char)
      end
    end
  end
  return { start = { line = line1 - 1, character = start_char }, ['end'] = { line = line2 - 1, character = end_char } }
end

-- ---- the commands ------------------------------------------------------------------------------------

--- Runs a task. `args`: {instruction = string, bufnr?, line1?, line2?} — with line1/line2 the task is
--- focused on that selection of the buffer (uris + range); without, it runs on the buffer's project.
function M.run(args)
  args = args or {}
  local bufnr = args.bufnr or vim.api.nvim_get_current_buf()
  local function send(instruction)
    if instruction == nil then
      return -- prompt cancelled
    end
    local opts = options()
    local client = M.client(bufnr)
    local argument = { instruction = instruction }
    if args.line1 and clients.eligible(bufnr, opts) then
      argument.uris = { vim.uri_from_bufnr(bufnr) }
      argument.range = M.selection_range(bufnr, args.line1, args.line2 or args.line1)
    else
      argument.folder = vim.uri_from_fname(client.config.root_dir)
    end
    M.execute('codexSys.runTask', argument, args.callback, { bufnr = bufnr })
  end
  if args.instruction ~= nil and args.instruction ~= '' then
    send(args.instruction)
  else
    vim.ui.input({ prompt = 'Codex instruction: ' }, send)
  end
end

--- Lists the tasks: callback(tasks) with the server's TaskInfo list, newest first.
function M.list_tasks(callback, bufnr)
  M.execute('codexSys.listTasks', vim.empty_dict(), function(err, result)
    if err or type(result) ~= 'table' then
      return
    end
    local tasks = type(result.tasks) == 'table' and result.tasks or {}
    for i = #tasks, 1, -1 do
      state.remember_task(tasks[i].taskId)
    end
    callback(tasks)
  end, { bufnr = bufnr, quiet = true })
end

--- Calls fn(id) with `id`, or with the newest task's id when `id` is empty.
local function with_task_id(id, fn)
  if id ~= nil and id ~= '' then
    return fn(id)
  end
  M.list_tasks(function(tasks)
    if #tasks == 0 then
      notify('no task yet: run one with :CodexRun', levels.WARN)
      return
    end
    fn(tasks[1].taskId)
  end)
end

local function first_line(text)
  return (tostring(text or ''):gsub('\n.*', ''))
end

--- A scratch buffer (filetype diff) with the diff of task `id` (default: the newest task).
function M.show_diff(id, callback)
  with_task_id(id, function(task_id)
    M.execute('codexSys.showDiff', { taskId = task_id }, function(err, result)
      if err or type(result) ~= 'table' then
        return
      end
      local lines = vim.split(result.diff or '', '\n', { plain = true })
      if lines[#lines] == '' then
        table.remove(lines)
      end
      local name = 'codex-sys://diff/' .. task_id
      local old = vim.fn.bufnr('^' .. vim.fn.escape(name, '\\/.*$^~[]') .. '$')
      if old ~= -1 then
        pcall(vim.api.nvim_buf_delete, old, { force = true })
      end
      vim.cmd(options().diff_split)
      local buf = vim.api.nvim_create_buf(false, true)
      vim.api.nvim_win_set_buf(0, buf)
      vim.api.nvim_buf_set_lines(buf, 0, -1, false, #lines > 0 and lines or { '(no changes)' })
      vim.api.nvim_buf_set_name(buf, name)
      vim.bo[buf].buftype = 'nofile'
      vim.bo[buf].bufhidden = 'wipe'
      vim.bo[buf].swapfile = false
      vim.bo[buf].modifiable = false
      vim.bo[buf].filetype = 'diff'
      vim.b[buf].codex_sys_task = task_id
      vim.b[buf].codex_sys_patch = result.uri
      if callback then
        callback(buf)
      end
    end, { quiet = true })
  end)
end

--- Applies every change of task `id` (default: the newest task) that still fits.
function M.apply_all(id, callback)
  with_task_id(id, function(task_id)
    M.execute('codexSys.applyTask', { taskId = task_id }, callback)
  end)
end

--- Applies the change under the cursor (the codex-sys diagnostic on the cursor line).
function M.apply_here(callback)
  local bufnr = vim.api.nvim_get_current_buf()
  local lnum = vim.api.nvim_win_get_cursor(0)[1] - 1
  local client = M.client(bufnr)
  local namespace = vim.lsp.diagnostic.get_namespace(client.id)
  for _, diagnostic in ipairs(vim.diagnostic.get(bufnr, { namespace = namespace })) do
    local data = diagnostic.user_data and diagnostic.user_data.lsp and diagnostic.user_data.lsp.data
    -- a range ending at column 0 of a later line stops at the line before (whole lines)
    local last = diagnostic.end_lnum or diagnostic.lnum
    if last > diagnostic.lnum and (diagnostic.end_col or 0) == 0 then
      last = last - 1
    end
    last = math.max(last, diagnostic.lnum)
    if type(data) == 'table' and data.taskId and lnum >= diagnostic.lnum and lnum <= last then
      M.execute('codexSys.applyTask', { taskId = data.taskId, hunks = { data.hunk } }, callback, { bufnr = bufnr })
      return
    end
  end
  notify('no codex-sys change on this line', levels.WARN)
end

--- Forgets the changes of task `id` (default: the newest task) and clears its diagnostics.
function M.discard(id, callback)
  with_task_id(id, function(task_id)
    M.execute('codexSys.discardTask', { taskId = task_id }, callback)
  end)
end

--- Cancels task `id` (default: the newest task).
function M.cancel(id, callback)
  with_task_id(id, function(task_id)
    M.execute('codexSys.cancelTask', { taskId = task_id }, callback)
  end)
end

local final_states = { COMPLETED = true, FAILED = true, CANCELLED = true, TIMED_OUT = true }

local function describe(task)
  local text = string.format('%s  %-10s %s', task.taskId, task.state or '?', first_line(task.instruction))
  if (task.changes or 0) > 0 then
    text = text .. string.format('  [%d/%d changes fit]', task.applicable or 0, task.changes)
  end
  if task.reason and task.reason ~= '' then
    text = text .. '  (' .. first_line(task.reason) .. ')'
  end
  return text
end

--- Lists the tasks with vim.ui.select, then offers what can be done with the chosen one.
function M.tasks()
  M.list_tasks(function(tasks)
    if #tasks == 0 then
      notify('no task yet: run one with :CodexRun')
      return
    end
    vim.ui.select(tasks, { prompt = 'Codex tasks:', kind = 'codex_sys.task', format_item = describe }, function(task)
      if not task then
        return
      end
      local actions = { { 'Show diff', M.show_diff } }
      if (task.changes or 0) > 0 then
        table.insert(actions, { 'Apply all changes', M.apply_all })
        table.insert(actions, { 'Discard changes', M.discard })
      end
      if not final_states[task.state] then
        table.insert(actions, { 'Cancel task', M.cancel })
      end
      vim.ui.select(actions, {
        prompt = 'Task ' .. task.taskId .. ':',
        kind = 'codex_sys.action',
        format_item = function(action)
          return action[1]
        end,
      }, function(action)
        if action then
          action[2](task.taskId)
        end
      end)
    end)
  end)
end

--- Completion of task ids for the commands (ids seen in this session, newest first).
function M.complete_task_id(lead)
  local out = {}
  for i = #state.task_ids, 1, -1 do
    local id = state.task_ids[i]
    if id:sub(1, #lead) == lead then
      table.insert(out, id)
    end
  end
  return out
end

--- Recent progress reports ({token, kind, title, message, percentage}), oldest first.
function M.progress()
  return state.progress
end

--- Stops every client of the plugin.
function M.stop()
  clients.stop_all()
end

return M
