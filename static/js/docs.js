/**
 * The API docs page (/docs): Swagger UI, served from npm under /vendor/swagger-ui,
 * reading the app's OpenAPI schema. Started here because the CSP forbids inline scripts.
 */
const root = document.getElementById('swagger-ui');
window.SwaggerUIBundle({
  url: root.dataset.openapiUrl,
  domNode: root,
  deepLinking: true,
  tryItOutEnabled: true,
});
