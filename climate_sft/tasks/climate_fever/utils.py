"""Climate-FEVER's claim_label is SUPPORTS 0, REFUTES 1, NOT_ENOUGH_INFO 2, DISPUTED 3: a disputed claim has no
single right answer among the three choices, so it is left out."""

DISPUTED = 3


def process_docs(dataset):
    return dataset.filter(lambda doc: doc["claim_label"] != DISPUTED)
