function (doc) { emit(doc._id, null); }
