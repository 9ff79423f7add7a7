// Starts Swagger UI on this service's OpenAPI document (see app/docs.py).
(function () {
  const container = document.getElementById("swagger-ui-container");
  // validatorUrl null: the spec is never sent to the public validator service.
  const config = Object.assign(
    {url: container.dataset.specUrl, dom_id: "#swagger-ui-container", validatorUrl: null},
    {{ config | tojson }}
  );
  window.ui = SwaggerUIBundle(config);
})();
