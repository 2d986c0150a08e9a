// Drag and drop onto an upload form: the dropped file fills its file input.
document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-dropzone]")) {
    const input = form.querySelector("input[type=file]");
    const on = (e) => { e.preventDefault(); form.classList.add("over"); };
    const off = () => form.classList.remove("over");
    form.addEventListener("dragover", on);
    form.addEventListener("dragenter", on);
    form.addEventListener("dragleave", off);
    form.addEventListener("drop", (e) => {
      e.preventDefault();
      off();
      if (e.dataTransfer && e.dataTransfer.files.length) {
        input.files = e.dataTransfer.files;
        form.querySelector(".hint").textContent = e.dataTransfer.files[0].name + " ready: press Upload";
      }
    });
  }
});
