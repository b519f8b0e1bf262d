function (newDoc, oldDoc, userCtx, secObj) {
  if (!newDoc._deleted && typeof newDoc.type !== "string") {
    throw({forbidden: "every document needs a string `type`"});
  }
}
