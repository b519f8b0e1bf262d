function (newDoc, oldDoc, userCtx) {
  // Every document a user writes names her: its _id starts with her name and a colon (CouchDB refuses `:` in
  // user names, so that namespace is hers alone, and ids never collide across users in analytics) and its
  // `owner` is her name; a deletion needs only the id. Server admins (the app's back end, the replicator) are
  // trusted. In main-entities users are members and cannot remove this; in her own database she is an admin
  // (couch_peruser makes her one) and could, so there the guarantee is the selector of her replication to
  // analytics, and this only tells an honest client at once (docs/reference-architecture.md, "Provenance").
  if (userCtx.roles.indexOf("_admin") !== -1) {
    return;
  }
  var namespace = userCtx.name + ":";
  if (newDoc._id.slice(0, namespace.length) !== namespace) {
    throw({forbidden: "the _id of your documents starts with your name and a colon: " + namespace});
  }
  if (!newDoc._deleted && newDoc.owner !== userCtx.name) {
    throw({forbidden: "the owner of your documents is your name: " + userCtx.name});
  }
}
