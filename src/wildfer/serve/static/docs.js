// Offline API reference: renders this server's /openapi.json (no Swagger assets from a CDN).
"use strict";

(function () {
  const make = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  };
  document.querySelectorAll("pre.code").forEach((p) => {
    p.textContent = p.textContent.replaceAll("HOST", location.host);
  });

  function schemaText(s) {
    if (!s) return "";
    if (s.$ref) return s.$ref.split("/").pop();
    if (s.enum) return s.enum.join(" | ");
    if (s.allOf) return s.allOf.map(schemaText).join(" & ");
    return s.type || "";
  }

  fetch("/openapi.json").then((r) => r.json()).then((api) => {
    document.getElementById("api-description").textContent = api.info.description || "";
    const root = document.getElementById("endpoints");
    Object.entries(api.paths).forEach(([path, ops]) => {
      Object.entries(ops).forEach(([verb, op]) => {
        const sec = make("article", "endpoint");
        const h = make("h2");
        h.append(make("span", "verb verb-" + verb, verb.toUpperCase()), " ", make("code", null, path));
        sec.appendChild(h);
        if (op.summary) sec.appendChild(make("p", "summary", op.summary));
        if (op.description) sec.appendChild(make("p", "description", op.description));
        if (op.parameters && op.parameters.length) {
          sec.appendChild(make("h3", null, "Query parameters"));
          const ul = make("ul");
          op.parameters.forEach((p) => {
            const li = make("li");
            li.append(make("code", null, p.name), " (" + schemaText(p.schema) + ", default " +
              JSON.stringify(p.schema && p.schema.default) + ") " + (p.description || ""));
            ul.appendChild(li);
          });
          sec.appendChild(ul);
        }
        if (op.requestBody) {
          sec.appendChild(make("h3", null, "Body"));
          sec.appendChild(make("p", null, Object.keys(op.requestBody.content).join(", ")));
        }
        sec.appendChild(make("h3", null, "Responses"));
        const ul = make("ul");
        Object.entries(op.responses || {}).forEach(([code, r]) => {
          const li = make("li");
          li.append(make("code", null, code), " " + (r.description || ""));
          ul.appendChild(li);
        });
        sec.appendChild(ul);
        root.appendChild(sec);
      });
    });
  }).catch((e) => {
    document.getElementById("api-description").textContent = "Cannot load /openapi.json: " + e.message;
  });
})();
