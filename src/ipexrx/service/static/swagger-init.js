// Starts Swagger UI on /docs (a file, not an inline script: the Content-Security-Policy allows none).
"use strict";

// Deep links stay on (/docs#/Assessment opens that section, and the address follows what is opened), but an
// operation's path is shown as plain text: Swagger UI would put a link inside the operation's button, a control
// inside a control that keyboard and screen-reader users cannot reach reliably (axe: nested-interactive).
const operationPathWithoutLink = () => ({
  wrapComponents: {
    OperationSummaryPath: (Original, system) => (props) => system.React.createElement(Original, {
      ...props,
      operationProps: props.operationProps.set("isDeepLinkingEnabled", false),
    }),
  },
});

window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  plugins: [operationPathWithoutLink],
});
