function (doc) {
  emit(doc.type || "(none)", 1);
}
