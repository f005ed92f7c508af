// Copy buttons of the partner's link pages: <button data-copy="ID"> copies the value (or text)
// of element ID. Served from this origin to pages whose CSP allows only this origin's scripts.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button[data-copy]")
  if (!button) return
  var field = document.getElementById(button.getAttribute("data-copy"))
  var text = field.value !== undefined ? field.value : field.textContent
  var done = function () {
    button.textContent = "Copied"
    setTimeout(function () { button.textContent = "Copy" }, 2000)
  }
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () { field.select && field.select() })
  } else if (field.select) { // plain http: select it, and copy the old way
    field.select()
    if (document.execCommand("copy")) done()
  }
})
