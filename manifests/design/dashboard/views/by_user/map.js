function (doc) {
  // A user's documents carry her name twice: `owner` and the start of the `_id` ("NAME:..."), which only she can
  // write (the provenance selector of her replication, the validation in main-entities). A document that is not
  // in its owner's namespace (one a server admin wrote) is nobody's.
  var owner = doc.owner;
  var hers = typeof owner === "string" && doc._id.slice(0, owner.length + 1) === owner + ":";
  emit(hers ? owner : "(unknown)", 1);
}
