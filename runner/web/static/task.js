// Live updates of a task page: follows the task's event stream (Server-Sent Events) and appends each
// timeline entry the server rendered, updating the state badge. Without this script the page still shows
// everything as of loading.
(function () {
  "use strict";
  var body = document.body;
  var timeline = document.getElementById("timeline");
  if (!timeline || body.dataset.live !== "1" || !window.EventSource) return;
  var hint = document.querySelector(".nojs");
  if (hint) hint.hidden = true;
  var badge = document.getElementById("state-badge");
  var live = document.getElementById("live");
  var source = new EventSource(body.dataset.events);
  source.addEventListener("task", function (message) {
    var data = JSON.parse(message.data);
    if (document.getElementById("ev-" + data.seq)) return;
    timeline.insertAdjacentHTML("beforeend", data.html);
    if (data.state && badge) {
      badge.textContent = data.state;
      badge.className = "badge st-" + data.state.toLowerCase();
    }
    if (data.final) {
      source.close();
      if (live) live.hidden = true;
      var ended = document.getElementById("ended");
      if (ended) ended.hidden = false;
    }
  });
  source.addEventListener("error", function () {
    if (live) live.classList.add("stalled");
  });
  source.addEventListener("open", function () {
    if (live) live.classList.remove("stalled");
  });
})();
