// Consistent Video Kit frontend extension: small, dependency-free; nothing is loaded from the network.
// Marks the untrained demo models on the loader so a shared workflow never passes them off as real.
import { app } from "../../scripts/app.js";

const UNTRAINED = "(untrained demo)";

function markUntrained(node) {
  const widget = node.widgets?.find((w) => w.name === "model_name");
  if (!widget) return;
  const base = node.constructor.title || node.type;
  const update = () => {
    node.title = String(widget.value).includes(UNTRAINED) ? `${base} — untrained demo` : base;
    node.setDirtyCanvas?.(true, true);
  };
  const previous = widget.callback;
  widget.callback = function (...args) {
    const r = previous?.apply(this, args);
    update();
    return r;
  };
  update();
}

app.registerExtension({
  name: "ConsistentVideoKit.core",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name !== "CVK_VideoModelLoader") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function (...args) {
      const r = onNodeCreated?.apply(this, args);
      markUntrained(this);
      return r;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function (...args) {
      const r = onConfigure?.apply(this, args);
      markUntrained(this);
      return r;
    };
  },
});
