// Starts Swagger UI on the API docs page (/schema). A file rather than an inline script, so the
// page's Content-Security-Policy allows scripts from this origin only.
"use strict";
SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.schema,
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
});
