function (doc) {
  var normalise = require("views/lib/normalise").type;
  if (doc.type) {
    emit(normalise(doc.type), 1);
  }
}
