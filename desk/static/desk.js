// The workbench's keyboard, for the queue: j / k move the selection, 1-5 record the selected
// item's outcome (its buttons, so the CSRF token goes with it), Enter opens its case. Every page
// works without this file; it only saves reaching for the mouse.
(function () {
  "use strict";

  var current = -1;

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr.work-item"));
  }

  function select(index) {
    var all = rows();
    if (!all.length) {
      return;
    }
    current = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (row, i) {
      row.classList.toggle("selected", i === current);
      row.setAttribute("aria-selected", i === current ? "true" : "false");
    });
    all[current].scrollIntoView({ block: "nearest" });
  }

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) {
      return;
    }
    var all = rows();
    if (!all.length) {
      return;
    }
    if (event.key === "j" || event.key === "k") {
      event.preventDefault();
      select(current + (event.key === "j" ? 1 : -1));
    } else if (/^[1-9]$/.test(event.key) && current >= 0) {
      var button = all[current].querySelector('button[data-key="' + event.key + '"]');
      if (button) {
        event.preventDefault();
        button.click();
      }
    } else if (event.key === "Enter" && current >= 0 && !/^(A|BUTTON)$/.test(event.target.tagName)) {
      var link = all[current].querySelector("a.case-link");
      if (link) {
        event.preventDefault();
        window.location.assign(link.href);
      }
    }
  });

  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("tr.work-item");
    if (row) {
      select(rows().indexOf(row));
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    select(0);
  });
})();
