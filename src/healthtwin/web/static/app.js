// Progressive enhancement only: every page works without this file. Loaded from this server (CSP 'self').
// "PNG" buttons draw a chart's SVG onto a canvas and download it; without scripts the SVG download remains.
(function () {
  "use strict";
  document.querySelectorAll("button.png").forEach(function (button) {
    var svg = document.getElementById(button.getAttribute("data-svg"));
    if (!svg) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      var box = svg.viewBox.baseVal;
      var scale = 2;
      var text = new XMLSerializer().serializeToString(svg);
      var url = URL.createObjectURL(new Blob([text], {type: "image/svg+xml"}));
      var image = new Image();
      image.onload = function () {
        var canvas = document.createElement("canvas");
        canvas.width = box.width * scale;
        canvas.height = box.height * scale;
        var context = canvas.getContext("2d");
        context.drawImage(image, 0, 0, canvas.width, canvas.height);
        URL.revokeObjectURL(url);
        canvas.toBlob(function (blob) {
          var link = document.createElement("a");
          link.href = URL.createObjectURL(blob);
          link.download = button.getAttribute("data-name") || "chart.png";
          document.body.appendChild(link);
          link.click();
          link.remove();
        }, "image/png");
      };
      image.src = url;
    });
  });
})();
