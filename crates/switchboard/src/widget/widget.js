// The embed script of the customer call button (docs/protocol.md §2.14):
//
//   <script src="https://switchboard.example/v1/widget.js"
//           data-tenant="acme" data-queue="support" async></script>
//
// adds a round "Call us" button at the bottom right of the page; it opens the
// switchboard's call page in an iframe (which asks for the microphone). The
// page may only be framed by the origins the tenant allows.
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var tenant = script.getAttribute("data-tenant");
  var queue = script.getAttribute("data-queue");
  var label = script.getAttribute("data-label") || "Call us";
  if (!tenant || !queue) {
    console.error("widget.js: data-tenant and data-queue are required");
    return;
  }
  var base = new URL(script.src, location.href);
  var src = new URL("/v1/widget/" + encodeURIComponent(tenant) + "/" + encodeURIComponent(queue), base);
  src.searchParams.set("page", location.href);

  function mount() {
    var button = document.createElement("button");
    button.type = "button";
    button.id = "switchboard-call-button";
    button.textContent = label;
    button.setAttribute("aria-expanded", "false");
    button.style.cssText = "position:fixed;right:20px;bottom:20px;z-index:2147483646;border:0;border-radius:999px;" +
      "padding:12px 20px;background:#1f6feb;color:#fff;font:600 15px system-ui,sans-serif;" +
      "box-shadow:0 4px 14px rgba(0,0,0,.25);cursor:pointer";
    var frame = null;
    button.addEventListener("click", function () {
      if (!frame) {
        frame = document.createElement("iframe");
        frame.id = "switchboard-call-frame";
        frame.title = label;
        frame.src = src.toString();
        frame.allow = "microphone; autoplay";
        frame.style.cssText = "position:fixed;right:20px;bottom:76px;z-index:2147483647;width:360px;height:420px;" +
          "max-width:calc(100vw - 40px);border:0;border-radius:14px;background:#fff;" +
          "box-shadow:0 8px 30px rgba(0,0,0,.3)";
        document.body.appendChild(frame);
      } else {
        frame.hidden = !frame.hidden;
      }
      button.setAttribute("aria-expanded", String(!frame.hidden));
    });
    document.body.appendChild(button);
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
