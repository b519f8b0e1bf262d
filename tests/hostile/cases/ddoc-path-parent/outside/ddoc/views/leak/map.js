function (doc) { emit('outside', null); }
