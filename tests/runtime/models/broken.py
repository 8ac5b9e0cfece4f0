"""A model whose weights cannot be read: the replica must exit with a clear error."""


class Broken:
    def load(self):
        raise FileNotFoundError("weights.bin is missing")

    def predict(self, inputs, parameters):
        return inputs
