// Subgate console: progressive enhancement only; every page works without this script.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A form that asks to be confirmed (an action that changes the ledger or pushes again).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }
  // Escape closes an open app menu, for keyboard users.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      for (const menu of document.querySelectorAll("details.app-menu[open]")) {
        menu.removeAttribute("open");
      }
    }
  });
  // Times are shown in UTC; the title of each shows the browser's local time as well.
  for (const time of document.querySelectorAll("time[datetime]")) {
    const local = new Date(time.getAttribute("datetime"));
    if (!Number.isNaN(local.getTime())) {
      time.title = local.toLocaleString();
    }
  }
});
