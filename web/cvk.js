// Consistent Video Kit frontend extension: small, dependency-free; nothing is loaded from the network.
// Draws an "untrained demo" badge on the loaders while one of the tiny demo models (video models, CameraCtrl,
// the CVD sync module, LVDM, LGC-VD) is selected, so a shared workflow never passes them off as real models.
// It never touches the node's title.
import { app } from "../../scripts/app.js";

const UNTRAINED = "(untrained demo)";
// loader → the widget that names the model
const LOADERS = {CVK_VideoModelLoader: "model_name", CVK_GuideModelLoader: "model_name",
                 CVK_CameraCtrlLoader: "cameractrl", CVK_CVDSyncLoader: "sync_module",
                 CVK_LVDMLoader: "model_name", CVK_LGCVDLoader: "model_name"};

app.registerExtension({
  name: "ConsistentVideoKit.core",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const widgetName = LOADERS[nodeData.name];
    if (!widgetName) return;
    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx, ...rest) {
      const r = onDrawForeground?.apply(this, [ctx, ...rest]);
      const widget = this.widgets?.find((w) => w.name === widgetName);
      if (widget && String(widget.value).includes(UNTRAINED) && !this.flags?.collapsed) {
        const label = "UNTRAINED DEMO";
        ctx.save();
        ctx.font = "bold 10px sans-serif";
        const w = ctx.measureText(label).width + 10;
        const x = this.size[0] - w - 6;
        const y = -(globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30) + 8;
        ctx.fillStyle = "#b35c00";
        ctx.beginPath();
        ctx.roundRect ? ctx.roundRect(x, y, w, 14, 4) : ctx.rect(x, y, w, 14);
        ctx.fill();
        ctx.fillStyle = "#fff";
        ctx.fillText(label, x + 5, y + 11);
        ctx.restore();
      }
      return r;
    };
  },
});
