// A validator for the subset of JSON Schema that protocol.schema.json uses (generated from the
// Python dataclasses in wasmagent/protocol.py), so the page checks messages against the same
// schema the worker does. Returns null when valid, else a message naming the offending field.
const TYPES = {
  string: (v) => typeof v === "string",
  integer: (v) => Number.isInteger(v),
  number: (v) => typeof v === "number" && Number.isFinite(v),
  boolean: (v) => typeof v === "boolean",
  null: (v) => v === null,
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  array: (v) => Array.isArray(v),
};

export function validate(schema, value, path = "message") {
  if ("const" in schema && value !== schema.const) return `${path} must be ${JSON.stringify(schema.const)}`;
  if (schema.anyOf) {
    return schema.anyOf.some((s) => validate(s, value, path) === null) ? null : `${path} has the wrong type`;
  }
  if (schema.type && !TYPES[schema.type](value)) return `${path} must be of type ${schema.type}`;
  if (schema.enum && !schema.enum.includes(value)) return `${path} must be one of ${schema.enum.join(", ")}`;
  if (typeof value === "string") {
    if (value.length < (schema.minLength ?? 0)) return `${path} is too short`;
    if (schema.maxLength !== undefined && value.length > schema.maxLength) return `${path} is too long`;
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) return `${path} is below ${schema.minimum}`;
    if (schema.maximum !== undefined && value > schema.maximum) return `${path} is above ${schema.maximum}`;
  }
  if (Array.isArray(value)) {
    if (value.length < (schema.minItems ?? 0)) return `${path} needs at least ${schema.minItems} items`;
    if (schema.maxItems !== undefined && value.length > schema.maxItems) return `${path} has too many items`;
    for (let i = 0; i < value.length && schema.items; i++) {
      const err = validate(schema.items, value[i], `${path}[${i}]`);
      if (err) return err;
    }
  }
  if (schema.properties && TYPES.object(value)) {
    for (const key of schema.required ?? []) if (!(key in value)) return `${path}.${key} is required`;
    for (const [key, v] of Object.entries(value)) {
      const sub = schema.properties[key];
      if (!sub) {
        if (schema.additionalProperties === false) return `${path}.${key} is not allowed`;
        continue;
      }
      const err = validate(sub, v, `${path}.${key}`);
      if (err) return err;
    }
  }
  return null;
}
