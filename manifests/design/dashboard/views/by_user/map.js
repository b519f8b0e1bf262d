function (doc) {
  // Documents carry their author: the user database they were written in, or the app's owner field.
  emit(doc.owner || doc.user || "(unknown)", 1);
}
