exports.type = function (type) {
  return String(type).toLowerCase();
};
